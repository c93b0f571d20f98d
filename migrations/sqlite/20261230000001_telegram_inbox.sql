-- Every Telegram update, kept before it is acknowledged; see the PostgreSQL twin for why.
CREATE TABLE telegram_inbox
(
    update_id   INTEGER PRIMARY KEY,
    chat_id     INTEGER,
    body        TEXT,
    received_at TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    handled_at  TEXT,
    outcome     TEXT
);
CREATE INDEX telegram_inbox_chat_pending ON telegram_inbox (chat_id, update_id) WHERE handled_at IS NULL;

CREATE TABLE telegram_chat_leases
(
    chat_id     INTEGER PRIMARY KEY,
    holder      TEXT    NOT NULL,
    fence       INTEGER NOT NULL,
    lease_until TEXT,
    updated_at  TEXT    NOT NULL
);
