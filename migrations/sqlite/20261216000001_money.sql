-- money: the credits ledger's read model (projections/src/money.rs, docs/analytics.md "Money"),
-- built from Account events by the `ledger:money` feed consumer. The three money_* tables can be
-- rebuilt from the events at any time (`aisha projections rebuild money`); never write to them
-- by hand. money_fal_prices and money_currency_rates hold the operator's settings (FAL_PRICES,
-- STARS_USD), written at every start. Times are RFC 3339 text in UTC, days YYYY-MM-DD text.

-- One row per ledger event. credits is the event's own amount; available_delta and
-- reserved_delta say how it moved the two balances. purpose_kind and preset label reservations
-- and the captures and releases that end them.
CREATE TABLE money_movements
(
    telegram_id     integer NOT NULL,
    sequence        integer NOT NULL,
    day             text    NOT NULL,
    kind            text    NOT NULL,
    credits         integer NOT NULL,
    available_delta integer NOT NULL,
    reserved_delta  integer NOT NULL,
    stars           integer,
    reservation_id  text,
    purpose_kind    text,
    preset          text,
    pack            text,
    charge_id       text,
    grant_source    text,
    release_reason  text,
    refunded_by     text,
    at              text    NOT NULL,
    event           text    NOT NULL,
    PRIMARY KEY (telegram_id, sequence)
) STRICT;

CREATE INDEX money_movements_day ON money_movements (day, kind);
CREATE INDEX money_movements_charge ON money_movements (charge_id) WHERE charge_id IS NOT NULL;

-- One row per account: what it holds now and its lifetime totals
-- (available + reserved = granted + purchased - spent - refunded).
CREATE TABLE money_balances
(
    telegram_id   integer PRIMARY KEY,
    available     integer NOT NULL,
    reserved      integer NOT NULL,
    granted       integer NOT NULL,
    purchased     integer NOT NULL,
    spent         integer NOT NULL,
    refunded      integer NOT NULL,
    movements     integer NOT NULL,
    last_sequence integer NOT NULL,
    updated_at    text    NOT NULL
) STRICT;

-- Reservations neither captured nor released yet.
CREATE TABLE money_open_reservations
(
    telegram_id    integer NOT NULL,
    reservation_id text    NOT NULL,
    credits        integer NOT NULL,
    purpose_kind   text    NOT NULL,
    preset         text    NOT NULL,
    avatar_id      text,
    generation_id  text,
    images         integer,
    reserved_at    text    NOT NULL,
    PRIMARY KEY (telegram_id, reservation_id)
) STRICT;

CREATE UNIQUE INDEX money_open_reservations_id ON money_open_reservations (reservation_id);
CREATE INDEX money_open_reservations_at ON money_open_reservations (reserved_at);

-- The operator's FAL prices: USD per completed request of a trainer, per image of a generator.
CREATE TABLE money_fal_prices
(
    endpoint text PRIMARY KEY,
    usd      real NOT NULL
) STRICT;

-- USD per unit of a currency we are paid in: 'XTR' (Telegram Stars).
CREATE TABLE money_currency_rates
(
    currency text PRIMARY KEY,
    usd      real NOT NULL
) STRICT;

-- Views for analysts (the same names and columns as on PostgreSQL).

-- Credits bought per day and pack.
CREATE VIEW money_purchases AS
SELECT day, pack, count(*) AS purchases,
       CAST(sum(stars) AS integer) AS stars, CAST(sum(credits) AS integer) AS credits
  FROM money_movements
 WHERE kind = 'purchased'
 GROUP BY day, pack;

-- Credits held, spent (captured) and given back (released, by reason) per day, purpose and preset.
CREATE VIEW money_spending AS
SELECT day, purpose_kind, preset,
       CAST(sum(CASE WHEN kind = 'reserved' THEN 1 ELSE 0 END) AS integer)       AS reservations,
       CAST(sum(CASE WHEN kind = 'reserved' THEN credits ELSE 0 END) AS integer) AS credits_reserved,
       CAST(sum(CASE WHEN kind = 'captured' THEN 1 ELSE 0 END) AS integer)       AS captures,
       CAST(sum(CASE WHEN kind = 'captured' THEN credits ELSE 0 END) AS integer) AS credits_captured,
       CAST(sum(CASE WHEN kind = 'released' THEN 1 ELSE 0 END) AS integer)       AS releases,
       CAST(sum(CASE WHEN kind = 'released' THEN credits ELSE 0 END) AS integer) AS credits_released,
       CAST(sum(CASE WHEN release_reason = 'failed' THEN credits ELSE 0 END) AS integer)
                                                                             AS released_failed,
       CAST(sum(CASE WHEN release_reason = 'cancelled' THEN credits ELSE 0 END) AS integer)
                                                                             AS released_cancelled,
       CAST(sum(CASE WHEN release_reason = 'deadline_passed' THEN credits ELSE 0 END) AS integer)
                                                                             AS released_deadline_passed,
       CAST(sum(CASE WHEN release_reason = 'avatar_deleted' THEN credits ELSE 0 END) AS integer)
                                                                             AS released_avatar_deleted,
       CAST(sum(CASE WHEN release_reason = 'refused' THEN credits ELSE 0 END) AS integer)
                                                                             AS released_refused
  FROM money_movements
 WHERE kind IN ('reserved', 'captured', 'released')
 GROUP BY day, purpose_kind, preset;

-- Purchases refunded per day.
CREATE VIEW money_refunds AS
SELECT day, count(*) AS refunds,
       CAST(sum(stars) AS integer) AS stars, CAST(sum(credits) AS integer) AS credits
  FROM money_movements
 WHERE kind = 'refunded'
 GROUP BY day;

-- All balances together, one row (none before the first movement), dated by the newest movement:
-- the totals as they stood at the end of that day.
CREATE VIEW money_balance_totals AS
SELECT t.*
  FROM (SELECT (SELECT max(day) FROM money_movements) AS day,
               count(*)                          AS accounts,
               CAST(sum(available) AS integer)   AS available,
               CAST(sum(reserved) AS integer)    AS reserved,
               CAST(sum(granted) AS integer)     AS granted,
               CAST(sum(purchased) AS integer)   AS purchased,
               CAST(sum(spent) AS integer)       AS spent,
               CAST(sum(refunded) AS integer)    AS refunded
          FROM money_balances) t
 WHERE t.accounts > 0;

-- Completed FAL work per UTC day of completion and endpoint: trainings (training_jobs) are billed
-- per request, generations and upscales (generations) per image. unit_usd and cost_usd are NULL
-- for an endpoint FAL_PRICES does not price.
CREATE VIEW money_fal_usage AS
WITH work AS (SELECT substr(finished_at, 1, 10) AS day, endpoint,
                     'training' AS work_kind, 0 AS images
                FROM training_jobs
               WHERE status = 'completed' AND finished_at IS NOT NULL
              UNION ALL
              SELECT substr(finished_at, 1, 10), endpoint, 'generation', image_count
                FROM generations
               WHERE status = 'completed' AND finished_at IS NOT NULL),
     used AS (SELECT day, endpoint, min(work_kind) AS work_kind, count(*) AS requests,
                     CAST(sum(images) AS integer) AS images,
                     CAST(sum(CASE WHEN work_kind = 'training' THEN 1 ELSE images END) AS integer)
                         AS billed_units
                FROM work
               GROUP BY day, endpoint)
SELECT used.day, used.endpoint, used.work_kind, used.requests, used.images, used.billed_units,
       p.usd AS unit_usd, p.usd * used.billed_units AS cost_usd
  FROM used
  LEFT JOIN money_fal_prices p ON p.endpoint = used.endpoint;

-- FAL cost against revenue per day: revenue is the Stars purchased minus the Stars refunded that
-- day, in Stars and at STARS_USD; unpriced_requests counts completed work FAL_PRICES leaves out.
CREATE VIEW money_fal_revenue AS
WITH fal AS (SELECT day, CAST(sum(requests) AS integer) AS requests,
                    CAST(sum(CASE WHEN unit_usd IS NULL THEN requests ELSE 0 END) AS integer)
                        AS unpriced,
                    total(cost_usd) AS cost
               FROM money_fal_usage GROUP BY day),
     paid AS (SELECT day,
                     CAST(sum(CASE WHEN kind = 'purchased' THEN stars ELSE 0 END) AS integer)
                         AS purchased,
                     CAST(sum(CASE WHEN kind = 'refunded' THEN stars ELSE 0 END) AS integer)
                         AS refunded
                FROM money_movements
               WHERE kind IN ('purchased', 'refunded')
               GROUP BY day),
     days AS (SELECT day FROM fal UNION SELECT day FROM paid),
     rate AS (SELECT usd FROM money_currency_rates WHERE currency = 'XTR')
SELECT days.day,
       coalesce(fal.requests, 0)                                        AS fal_requests,
       coalesce(fal.unpriced, 0)                                        AS unpriced_requests,
       coalesce(fal.cost, 0.0)                                          AS fal_cost_usd,
       coalesce(paid.purchased, 0)                                      AS stars_purchased,
       coalesce(paid.refunded, 0)                                       AS stars_refunded,
       coalesce(paid.purchased, 0) - coalesce(paid.refunded, 0)         AS revenue_stars,
       (SELECT usd FROM rate)                                           AS stars_usd,
       (coalesce(paid.purchased, 0) - coalesce(paid.refunded, 0)) * (SELECT usd FROM rate)
                                                                        AS revenue_usd,
       (coalesce(paid.purchased, 0) - coalesce(paid.refunded, 0)) * (SELECT usd FROM rate)
           - coalesce(fal.cost, 0.0)                                    AS margin_usd
  FROM days
  LEFT JOIN fal ON fal.day = days.day
  LEFT JOIN paid ON paid.day = days.day;
