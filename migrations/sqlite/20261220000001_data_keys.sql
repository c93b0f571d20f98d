-- Crypto-shredding. Personal data in events and snapshots is sealed with the key of its avatar
-- (or of its user); a key is stored wrapped: an avatar's by its owner's key (parent_id), a user's
-- by the master key DATA_KEY (master_id names which one, for rotations). Destroying a key is
-- deleting its row; a user's erasure deletes the user's row and every row under it.
CREATE TABLE data_keys
(
    key_id     text PRIMARY KEY,
    parent_id  text,
    master_id  text,
    wrapped    text NOT NULL,
    created_at text NOT NULL,
    CHECK ((parent_id IS NULL) <> (master_id IS NULL))
) STRICT;
CREATE INDEX data_keys_by_parent ON data_keys (parent_id) WHERE parent_id IS NOT NULL;

-- What operators did that touched people's data (erasures), without the personal data itself:
-- the subject is a pseudonym, the reason the operator's words.
CREATE TABLE operator_actions
(
    id         integer PRIMARY KEY AUTOINCREMENT,
    action     text    NOT NULL,
    subject    text    NOT NULL,
    operator   text    NOT NULL,
    reason     text    NOT NULL,
    details    text    NOT NULL,
    at         text    NOT NULL
) STRICT;
