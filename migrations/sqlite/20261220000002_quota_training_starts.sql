-- Trainings each user started, for the trainings-per-day quota. The read models forget a
-- deleted avatar's jobs; its paid jobs must still count, or deleting an avatar would reset the
-- quota. Written by the reactor from TrainingStarted, pruned after two days, removed with the
-- user on an erasure.
CREATE TABLE quota_training_starts
(
    avatar_id  text    NOT NULL,
    sequence   integer NOT NULL,
    owner      integer NOT NULL,
    started_at text    NOT NULL,
    PRIMARY KEY (avatar_id, sequence)
) STRICT;
CREATE INDEX quota_training_starts_by_owner ON quota_training_starts (owner, started_at);
CREATE INDEX quota_training_starts_by_time ON quota_training_starts (started_at);
