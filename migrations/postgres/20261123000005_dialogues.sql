-- Where each chat's conversation with the bot stands (waiting for a name, for photos, for a
-- prompt), so a restart does not make a user repeat a step. No row means the chat is idle.
-- The bot's own memory, not a read model: nothing here comes from events.
CREATE TABLE bot_dialogues
(
    chat_id    bigint PRIMARY KEY,
    state      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL
);
