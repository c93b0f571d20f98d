-- Promo codes the operators create (`aisha credits promo add`), and who used which. A use is a
-- row per (code, user), inserted before the ledger grants the credits: a retry after a crash
-- finds its row and completes the grant instead of taking a second use, and the counter on the
-- code is raised in the same transaction, so two users racing for the last use get one success.
CREATE TABLE promo_codes
(
    code       text    PRIMARY KEY,
    credits    integer NOT NULL CHECK (credits > 0),
    -- The first moment the code no longer works; NULL: never expires.
    expires_at text,
    -- NULL: no limit.
    max_uses   integer CHECK (max_uses > 0),
    uses       integer NOT NULL DEFAULT 0,
    created_by text    NOT NULL,
    created_at text    NOT NULL
) STRICT;

CREATE TABLE promo_code_uses
(
    code        text    NOT NULL REFERENCES promo_codes (code),
    telegram_id integer NOT NULL,
    used_at     text    NOT NULL,
    PRIMARY KEY (code, telegram_id)
) STRICT;
