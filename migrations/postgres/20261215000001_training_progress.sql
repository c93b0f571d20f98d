-- The progress bar of each running training: which message shows it (the "training started"
-- message, edited in place while FAL works) and what it says now. The bot's own memory, not a
-- read model: a row lives from the start of a training until its outcome is shown (or the
-- avatar is deleted), and its texts carry the avatar's name.
CREATE TABLE training_progress
(
    avatar_id    text PRIMARY KEY,
    owner        bigint      NOT NULL,
    chat_id      bigint      NOT NULL,
    message_id   bigint      NOT NULL,
    -- The user's language when the training started ('ru', 'en').
    lang         text        NOT NULL,
    -- The message as first shown; the bar's line goes under it.
    base_text    text        NOT NULL,
    -- What the message says now, so an edit is only made when it would change something.
    last_text    text        NOT NULL,
    last_percent bigint      NOT NULL DEFAULT 0,
    -- Bumped by every claimed edit: instances sharing the table claim an edit by a conditional
    -- update on it, so only one of them makes it.
    version      bigint      NOT NULL DEFAULT 0,
    edited_at    timestamptz NOT NULL,
    created_at   timestamptz NOT NULL
);
