-- money: the credits ledger's read model (projections/src/money.rs, docs/analytics.md "Money"),
-- built from Account events by the `ledger:money` feed consumer. The three money_* tables can be
-- rebuilt from the events at any time (`aisha projections rebuild money`); never write to them
-- by hand. money_fal_prices and money_currency_rates hold the operator's settings (FAL_PRICES,
-- STARS_USD), written at every start.

-- One row per ledger event. credits is the event's own amount; available_delta and
-- reserved_delta say how it moved the two balances. purpose_kind and preset label reservations
-- and the captures and releases that end them.
CREATE TABLE money_movements
(
    telegram_id     bigint      NOT NULL,
    sequence        bigint      NOT NULL,
    day             date        NOT NULL,
    kind            text        NOT NULL,
    credits         bigint      NOT NULL,
    available_delta bigint      NOT NULL,
    reserved_delta  bigint      NOT NULL,
    stars           bigint,
    reservation_id  text,
    purpose_kind    text,
    preset          text,
    pack            text,
    charge_id       text,
    grant_source    text,
    release_reason  text,
    refunded_by     text,
    at              timestamptz NOT NULL,
    event           text        NOT NULL,
    PRIMARY KEY (telegram_id, sequence)
);

CREATE INDEX money_movements_day ON money_movements (day, kind);
CREATE INDEX money_movements_charge ON money_movements (charge_id) WHERE charge_id IS NOT NULL;

-- One row per account: what it holds now and its lifetime totals
-- (available + reserved = granted + purchased - spent - refunded).
CREATE TABLE money_balances
(
    telegram_id   bigint PRIMARY KEY,
    available     bigint      NOT NULL,
    reserved      bigint      NOT NULL,
    granted       bigint      NOT NULL,
    purchased     bigint      NOT NULL,
    spent         bigint      NOT NULL,
    refunded      bigint      NOT NULL,
    movements     bigint      NOT NULL,
    last_sequence bigint      NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- Reservations neither captured nor released yet.
CREATE TABLE money_open_reservations
(
    telegram_id    bigint      NOT NULL,
    reservation_id text        NOT NULL,
    credits        bigint      NOT NULL,
    purpose_kind   text        NOT NULL,
    preset         text        NOT NULL,
    avatar_id      text,
    generation_id  text,
    images         bigint,
    reserved_at    timestamptz NOT NULL,
    PRIMARY KEY (telegram_id, reservation_id)
);

CREATE UNIQUE INDEX money_open_reservations_id ON money_open_reservations (reservation_id);
CREATE INDEX money_open_reservations_at ON money_open_reservations (reserved_at);

-- The operator's FAL prices: USD per completed request of a trainer, per image of a generator.
CREATE TABLE money_fal_prices
(
    endpoint text PRIMARY KEY,
    usd      double precision NOT NULL
);

-- USD per unit of a currency we are paid in: 'XTR' (Telegram Stars).
CREATE TABLE money_currency_rates
(
    currency text PRIMARY KEY,
    usd      double precision NOT NULL
);

-- Views for analysts (the same names and columns as on SQLite).

-- Credits bought per day and pack.
CREATE VIEW money_purchases AS
SELECT day, pack, count(*) AS purchases,
       CAST(sum(stars) AS bigint) AS stars, CAST(sum(credits) AS bigint) AS credits
  FROM money_movements
 WHERE kind = 'purchased'
 GROUP BY day, pack;

-- Credits held, spent (captured) and given back (released, by reason) per day, purpose and preset.
CREATE VIEW money_spending AS
SELECT day, purpose_kind, preset,
       CAST(sum(CASE WHEN kind = 'reserved' THEN 1 ELSE 0 END) AS bigint)       AS reservations,
       CAST(sum(CASE WHEN kind = 'reserved' THEN credits ELSE 0 END) AS bigint) AS credits_reserved,
       CAST(sum(CASE WHEN kind = 'captured' THEN 1 ELSE 0 END) AS bigint)       AS captures,
       CAST(sum(CASE WHEN kind = 'captured' THEN credits ELSE 0 END) AS bigint) AS credits_captured,
       CAST(sum(CASE WHEN kind = 'released' THEN 1 ELSE 0 END) AS bigint)       AS releases,
       CAST(sum(CASE WHEN kind = 'released' THEN credits ELSE 0 END) AS bigint) AS credits_released,
       CAST(sum(CASE WHEN release_reason = 'failed' THEN credits ELSE 0 END) AS bigint)
                                                                            AS released_failed,
       CAST(sum(CASE WHEN release_reason = 'cancelled' THEN credits ELSE 0 END) AS bigint)
                                                                            AS released_cancelled,
       CAST(sum(CASE WHEN release_reason = 'deadline_passed' THEN credits ELSE 0 END) AS bigint)
                                                                            AS released_deadline_passed,
       CAST(sum(CASE WHEN release_reason = 'avatar_deleted' THEN credits ELSE 0 END) AS bigint)
                                                                            AS released_avatar_deleted,
       CAST(sum(CASE WHEN release_reason = 'refused' THEN credits ELSE 0 END) AS bigint)
                                                                            AS released_refused
  FROM money_movements
 WHERE kind IN ('reserved', 'captured', 'released')
 GROUP BY day, purpose_kind, preset;

-- Purchases refunded per day.
CREATE VIEW money_refunds AS
SELECT day, count(*) AS refunds,
       CAST(sum(stars) AS bigint) AS stars, CAST(sum(credits) AS bigint) AS credits
  FROM money_movements
 WHERE kind = 'refunded'
 GROUP BY day;

-- All balances together, one row (none before the first movement), dated by the newest movement:
-- the totals as they stood at the end of that day.
CREATE VIEW money_balance_totals AS
SELECT t.*
  FROM (SELECT (SELECT max(day) FROM money_movements) AS day,
               count(*)                          AS accounts,
               CAST(sum(available) AS bigint)    AS available,
               CAST(sum(reserved) AS bigint)     AS reserved,
               CAST(sum(granted) AS bigint)      AS granted,
               CAST(sum(purchased) AS bigint)    AS purchased,
               CAST(sum(spent) AS bigint)        AS spent,
               CAST(sum(refunded) AS bigint)     AS refunded
          FROM money_balances) t
 WHERE t.accounts > 0;

-- Completed FAL work per UTC day of completion and endpoint: trainings (training_jobs) are billed
-- per request, generations and upscales (generations) per image. unit_usd and cost_usd are NULL
-- for an endpoint FAL_PRICES does not price.
CREATE VIEW money_fal_usage AS
WITH work AS (SELECT (finished_at AT TIME ZONE 'UTC')::date AS day, endpoint,
                     'training' AS work_kind, 0::bigint AS images
                FROM training_jobs
               WHERE status = 'completed' AND finished_at IS NOT NULL
              UNION ALL
              SELECT (finished_at AT TIME ZONE 'UTC')::date, endpoint, 'generation', image_count
                FROM generations
               WHERE status = 'completed' AND finished_at IS NOT NULL),
     used AS (SELECT day, endpoint, min(work_kind) AS work_kind, count(*) AS requests,
                     CAST(sum(images) AS bigint) AS images,
                     CAST(sum(CASE WHEN work_kind = 'training' THEN 1 ELSE images END) AS bigint)
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
WITH fal AS (SELECT day, CAST(sum(requests) AS bigint) AS requests,
                    CAST(sum(CASE WHEN unit_usd IS NULL THEN requests ELSE 0 END) AS bigint)
                        AS unpriced,
                    coalesce(sum(cost_usd), 0) AS cost
               FROM money_fal_usage GROUP BY day),
     paid AS (SELECT day,
                     CAST(sum(CASE WHEN kind = 'purchased' THEN stars ELSE 0 END) AS bigint)
                         AS purchased,
                     CAST(sum(CASE WHEN kind = 'refunded' THEN stars ELSE 0 END) AS bigint)
                         AS refunded
                FROM money_movements
               WHERE kind IN ('purchased', 'refunded')
               GROUP BY day),
     days AS (SELECT day FROM fal UNION SELECT day FROM paid),
     rate AS (SELECT usd FROM money_currency_rates WHERE currency = 'XTR')
SELECT days.day,
       coalesce(fal.requests, 0)                                        AS fal_requests,
       coalesce(fal.unpriced, 0)                                        AS unpriced_requests,
       coalesce(fal.cost, 0)                                            AS fal_cost_usd,
       coalesce(paid.purchased, 0)                                      AS stars_purchased,
       coalesce(paid.refunded, 0)                                       AS stars_refunded,
       coalesce(paid.purchased, 0) - coalesce(paid.refunded, 0)         AS revenue_stars,
       (SELECT usd FROM rate)                                           AS stars_usd,
       (coalesce(paid.purchased, 0) - coalesce(paid.refunded, 0)) * (SELECT usd FROM rate)
                                                                        AS revenue_usd,
       (coalesce(paid.purchased, 0) - coalesce(paid.refunded, 0)) * (SELECT usd FROM rate)
           - coalesce(fal.cost, 0)                                      AS margin_usd
  FROM days
  LEFT JOIN fal ON fal.day = days.day
  LEFT JOIN paid ON paid.day = days.day;
