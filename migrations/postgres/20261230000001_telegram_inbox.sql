-- Every Telegram update, kept before it is acknowledged (the webhook's 200, the poller's next
-- offset), so a crash, a deploy or a lost machine loses none; unique on `update_id`, so a
-- duplicated delivery is kept once. `chat_id` is the queue an update joins (its chat, or its
-- sender when it has none): one chat's updates are handled one at a time, in `update_id` order,
-- by whichever instance holds the chat's lease. What an update says is personal: `body` is
-- dropped once it is handled, and the rows themselves after a day.
CREATE TABLE telegram_inbox
(
    update_id   bigint PRIMARY KEY,
    chat_id     bigint,
    body        text,
    received_at timestamptz NOT NULL,
    attempts    integer     NOT NULL DEFAULT 0,
    handled_at  timestamptz,
    -- handled | skipped (a flooding chat's excess) | failed (the handler panicked) | ignored
    outcome     text
);
CREATE INDEX telegram_inbox_pending ON telegram_inbox (update_id) WHERE handled_at IS NULL;
CREATE INDEX telegram_inbox_chat_pending ON telegram_inbox (chat_id, update_id) WHERE handled_at IS NULL;
CREATE INDEX telegram_inbox_handled ON telegram_inbox (handled_at) WHERE handled_at IS NOT NULL;

-- Who handles a chat's updates now. `fence` grows with every new holder: a holder that was
-- paused past its lease finds its fence gone and writes nothing more for the chat.
CREATE TABLE telegram_chat_leases
(
    chat_id     bigint PRIMARY KEY,
    holder      text        NOT NULL,
    fence       bigint      NOT NULL,
    lease_until timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
