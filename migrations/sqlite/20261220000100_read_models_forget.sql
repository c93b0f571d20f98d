-- Read models forget (issue #14): deleting an avatar removes every read-model row that holds
-- its personal data (owner, name, prompts, file and image URLs, failure reasons) instead of
-- marking it, and the daily analytics keep no user id. See docs/analytics.md.

-- SQLite checks every view when a table changes: the views over what changes go first and are
-- made again at the end.
DROP VIEW analytics_daily;
DROP VIEW money_fal_revenue;
DROP VIEW money_fal_usage;

-- Rows of avatars deleted before this change go now, as the projections remove them from now on.
DELETE FROM generation_images
 WHERE generation_id IN
       (SELECT generation_id FROM generations
         WHERE avatar_deleted <> 0
            OR avatar_id IN (SELECT aggregate_id FROM events
                              WHERE aggregate_type = 'Avatar' AND event_type = 'AvatarDeleted'));
DELETE FROM generations
 WHERE avatar_deleted <> 0
    OR avatar_id IN (SELECT aggregate_id FROM events
                      WHERE aggregate_type = 'Avatar' AND event_type = 'AvatarDeleted');
DELETE FROM training_jobs
 WHERE avatar_id IN (SELECT aggregate_id FROM events
                      WHERE aggregate_type = 'Avatar' AND event_type = 'AvatarDeleted');
DELETE FROM gallery_avatars
 WHERE status = 'deleted'
    OR avatar_id IN (SELECT aggregate_id FROM events
                      WHERE aggregate_type = 'Avatar' AND event_type = 'AvatarDeleted');

-- Only live avatars have rows now: the deletion marks go.
ALTER TABLE generations DROP COLUMN avatar_deleted;
ALTER TABLE gallery_avatars DROP COLUMN deleted_at;
DROP INDEX gallery_avatars_owner;
CREATE INDEX gallery_avatars_owner ON gallery_avatars (owner, created_at DESC, avatar_id);

-- Active users: one row per (day, avatar) a Telegram user gave a command for, removed with the
-- avatar; distinct users are counted through the gallery's owners when read.
DROP TABLE daily_active_users;
CREATE TABLE daily_active_avatars
(
    day       text NOT NULL,
    avatar_id text NOT NULL,
    PRIMARY KEY (day, avatar_id)
) STRICT;
CREATE INDEX daily_active_avatars_avatar ON daily_active_avatars (avatar_id);

-- Completed FAL work per UTC day of completion, endpoint and kind (a training per request, a
-- generation or upscale per image): what money_fal_usage read from the rows deletions now remove.
CREATE TABLE daily_fal_work
(
    day       text    NOT NULL,
    endpoint  text    NOT NULL,
    work_kind text    NOT NULL,
    requests  integer NOT NULL DEFAULT 0,
    images    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (day, endpoint, work_kind)
) STRICT;

-- The trainer of an avatar's latest training, for the FAL work its result counts as.
ALTER TABLE analytics_avatars ADD COLUMN training_endpoint text;

-- The analytics projection starts over from the first event when `aisha serve` next runs, so
-- the new tables count every day there has been (the counts come back the same).
DELETE FROM daily_avatars;
DELETE FROM daily_trainings;
DELETE FROM daily_generations;
DELETE FROM daily_packs;
DELETE FROM daily_aspect_ratios;
DELETE FROM daily_upscales;
DELETE FROM analytics_avatars;
DELETE FROM analytics_open_generations;
DELETE FROM feed_checkpoints WHERE consumer = 'analytics';

-- One row per day with activity: the headline numbers.
CREATE VIEW analytics_daily AS
WITH days AS (SELECT day FROM daily_avatars
              UNION SELECT day FROM daily_trainings
              UNION SELECT day FROM daily_generations
              UNION SELECT day FROM daily_active_avatars),
     a AS (SELECT day, sum(created) AS created, sum(deleted) AS deleted
             FROM daily_avatars GROUP BY day),
     t AS (SELECT day, sum(started) AS started, sum(completed) AS completed,
                  sum(failed) AS failed, sum(completed_seconds) AS completed_seconds
             FROM daily_trainings GROUP BY day),
     g AS (SELECT day, sum(requested) AS requested, sum(completed) AS completed,
                  sum(failed) AS failed, sum(images) AS images,
                  sum(completed_seconds) AS completed_seconds
             FROM daily_generations GROUP BY day),
     u AS (SELECT active.day, count(DISTINCT owners.owner) AS users
             FROM daily_active_avatars active
             JOIN gallery_avatars owners ON owners.avatar_id = active.avatar_id
            GROUP BY active.day)
SELECT days.day,
       CAST(coalesce(a.created, 0) AS integer)   AS avatars_created,
       CAST(coalesce(a.deleted, 0) AS integer)   AS avatars_deleted,
       CAST(coalesce(t.started, 0) AS integer)   AS trainings_started,
       CAST(coalesce(t.completed, 0) AS integer) AS trainings_completed,
       CAST(coalesce(t.failed, 0) AS integer)    AS trainings_failed,
       CASE WHEN t.completed > 0 THEN t.completed_seconds / t.completed END
                                                AS training_avg_seconds,
       CAST(coalesce(g.requested, 0) AS integer) AS generations_requested,
       CAST(coalesce(g.completed, 0) AS integer) AS generations_completed,
       CAST(coalesce(g.failed, 0) AS integer)    AS generations_failed,
       CAST(coalesce(g.images, 0) AS integer)    AS images_generated,
       CASE WHEN g.completed > 0 THEN g.completed_seconds / g.completed END
                                                AS generation_avg_seconds,
       CAST(coalesce(u.users, 0) AS integer)     AS active_users
  FROM days
  LEFT JOIN a ON a.day = days.day
  LEFT JOIN t ON t.day = days.day
  LEFT JOIN g ON g.day = days.day
  LEFT JOIN u ON u.day = days.day;

-- Completed FAL work per UTC day of completion and endpoint, now from daily_fal_work (the same
-- columns as before): trainings are billed per request, generations and upscales per image.
CREATE VIEW money_fal_usage AS
WITH used AS (SELECT day, endpoint, min(work_kind) AS work_kind,
                     CAST(sum(requests) AS integer) AS requests,
                     CAST(sum(images) AS integer) AS images,
                     CAST(sum(CASE WHEN work_kind = 'training' THEN requests ELSE images END)
                          AS integer) AS billed_units
                FROM daily_fal_work
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
