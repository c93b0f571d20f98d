-- The bot's own memory of Telegram users: which chat to write to, in which language, and the
-- avatar they used last. Written when a user talks to the bot; read by the notifier, which acts
-- on events that carry only the owner's user id. Not a read model: nothing here comes from events.
CREATE TABLE telegram_users
(
    user_id        bigint PRIMARY KEY,
    chat_id        bigint      NOT NULL,
    language_code  text,
    last_avatar_id uuid,
    updated_at     timestamptz NOT NULL
);
