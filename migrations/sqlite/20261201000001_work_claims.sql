-- Fenced claims: every claim of a work item hands out a fresh token, and every later change of
-- the item is conditional on it, so a worker that lost its claim (paused past its lease) can
-- change nothing. `attempts` now counts failed attempts in a row (a lapsed lease counts as one;
-- a poll that finds the job still running resets it); `claims` counts every claim.
ALTER TABLE work_items ADD COLUMN claim_token text;
ALTER TABLE work_items ADD COLUMN claims integer NOT NULL DEFAULT 0;

-- Finished items are pruned after a retention period.
CREATE INDEX work_items_finished ON work_items (finished_at) WHERE status <> 'pending';

-- A secret of this deployment: it keys the tokens in the webhook URLs we hand to FAL, so a
-- webhook can only name a job we submitted.
CREATE TABLE server_secrets
(
    name  text PRIMARY KEY,
    value text NOT NULL
) STRICT;
