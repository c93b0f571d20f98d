-- Telegram's send budgets, shared by every instance on this database (src/bot/limiter/shared.rs):
-- one GCRA bucket per chat and one overall, each its theoretical arrival time in microseconds
-- since the epoch on the database's clock. Chats are keyed by their keyed pseudonym, never by
-- their Telegram id; a chat's row is pruned once its schedule is behind the clock.
--
-- UNLOGGED: the buckets are rewritten on every message and worth nothing after a crash (empty
-- buckets merely allow one burst), so they skip the WAL, and a reservation's commit waits for no
-- disk flush while it holds the overall row.
CREATE UNLOGGED TABLE telegram_send_budgets
(
    chat_key text   PRIMARY KEY,
    tat_us   bigint NOT NULL
);

CREATE UNLOGGED TABLE telegram_send_budget_overall
(
    id     boolean PRIMARY KEY DEFAULT true CHECK (id),
    tat_us bigint  NOT NULL
);
