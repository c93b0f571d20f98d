-- The step a chat was on before the update that last wrote it, and that update: an update
-- handled again after an interruption reads the step it first read, so it takes the same
-- branch and gives the same reply instead of treating its text as the next step's input.
-- A chat that went back to idle now keeps a row (its step "idle") for the same reason.
ALTER TABLE bot_dialogues ADD COLUMN previous jsonb;
ALTER TABLE bot_dialogues ADD COLUMN written_by bigint;
