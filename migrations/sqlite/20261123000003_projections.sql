-- Read models built from Avatar events (see projections/ and docs/analytics.md), and the views
-- analysts query. Every table here is owned by one projection and can be rebuilt from the events
-- at any time (`aisha projections rebuild`); never write to them by hand.

-- gallery: one row per avatar. Deleted avatars keep their row with status 'deleted'.
CREATE TABLE gallery_avatars
(
    avatar_id             text    PRIMARY KEY,
    owner                 integer NOT NULL,
    name                  text    NOT NULL,
    avatar_type           text    NOT NULL,
    gender                text    NOT NULL,
    status                text    NOT NULL,
    photo_count           integer NOT NULL DEFAULT 0,
    has_model             integer NOT NULL DEFAULT 0,
    model_ref             text,
    trigger_word          text,
    training_preset       text,
    training_started_at   text,
    trained_at            text,
    generations_requested integer NOT NULL DEFAULT 0,
    generations_completed integer NOT NULL DEFAULT 0,
    generations_failed    integer NOT NULL DEFAULT 0,
    images_generated      integer NOT NULL DEFAULT 0,
    last_generation_at    text,
    created_at            text    NOT NULL,
    updated_at            text    NOT NULL,
    deleted_at            text,
    last_sequence         integer NOT NULL
) STRICT;

-- The bot's gallery page: one user's live avatars, newest first.
CREATE INDEX gallery_avatars_owner ON gallery_avatars (owner, created_at DESC, avatar_id)
    WHERE status <> 'deleted';

-- training_jobs: one row per training started, keyed by the avatar and the sequence of its
-- TrainingStarted event; request_id is FAL's id once submitted.
CREATE TABLE training_jobs
(
    avatar_id        text    NOT NULL,
    started_sequence integer NOT NULL,
    owner            integer NOT NULL,
    avatar_type      text    NOT NULL,
    preset           text    NOT NULL,
    endpoint         text    NOT NULL,
    request_id       text,
    status           text    NOT NULL,
    started_at       text    NOT NULL,
    submitted_at     text,
    finished_at      text,
    duration_seconds real,
    fal_seconds      real,
    failure_reason   text,
    PRIMARY KEY (avatar_id, started_sequence)
) STRICT;

CREATE INDEX training_jobs_request ON training_jobs (request_id);
CREATE INDEX training_jobs_started ON training_jobs (started_at);

-- generations: one row per generation request; generation_images: one per returned image.
CREATE TABLE generations
(
    generation_id    text    PRIMARY KEY,
    avatar_id        text    NOT NULL,
    owner            integer NOT NULL,
    prompt           text    NOT NULL,
    preset           text,
    endpoint         text    NOT NULL,
    num_images       integer NOT NULL,
    status           text    NOT NULL,
    image_count      integer NOT NULL DEFAULT 0,
    requested_at     text    NOT NULL,
    finished_at      text,
    duration_seconds real,
    failure_reason   text,
    avatar_deleted   integer NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX generations_avatar ON generations (avatar_id, requested_at DESC);
CREATE INDEX generations_owner ON generations (owner, requested_at DESC);
CREATE INDEX generations_requested ON generations (requested_at);

CREATE TABLE generation_images
(
    generation_id text    NOT NULL,
    image_index   integer NOT NULL,
    url           text    NOT NULL,
    width         integer,
    height        integer,
    content_type  text,
    nsfw          integer NOT NULL,
    PRIMARY KEY (generation_id, image_index)
) STRICT;

-- analytics: daily counts by UTC day of the event.
CREATE TABLE daily_avatars
(
    day         text    NOT NULL,
    avatar_type text    NOT NULL,
    created     integer NOT NULL DEFAULT 0,
    deleted     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (day, avatar_type)
) STRICT;

CREATE TABLE daily_trainings
(
    day               text    NOT NULL,
    avatar_type       text    NOT NULL,
    started           integer NOT NULL DEFAULT 0,
    completed         integer NOT NULL DEFAULT 0,
    failed            integer NOT NULL DEFAULT 0,
    completed_seconds real    NOT NULL DEFAULT 0,
    failed_seconds    real    NOT NULL DEFAULT 0,
    PRIMARY KEY (day, avatar_type)
) STRICT;

CREATE TABLE daily_generations
(
    day               text    NOT NULL,
    preset            text    NOT NULL,
    requested         integer NOT NULL DEFAULT 0,
    completed         integer NOT NULL DEFAULT 0,
    failed            integer NOT NULL DEFAULT 0,
    images            integer NOT NULL DEFAULT 0,
    completed_seconds real    NOT NULL DEFAULT 0,
    PRIMARY KEY (day, preset)
) STRICT;

CREATE TABLE daily_active_users
(
    day     text    NOT NULL,
    user_id integer NOT NULL,
    PRIMARY KEY (day, user_id)
) STRICT;

-- The analytics projection's working memory (not for analysts).
CREATE TABLE analytics_avatars
(
    avatar_id           text PRIMARY KEY,
    avatar_type         text NOT NULL,
    training_started_at text
) STRICT;

CREATE TABLE analytics_open_generations
(
    generation_id text PRIMARY KEY,
    avatar_id     text NOT NULL,
    preset        text NOT NULL,
    requested_at  text NOT NULL
) STRICT;

CREATE INDEX analytics_open_generations_avatar ON analytics_open_generations (avatar_id);

-- Views for analysts (the same names and columns as on PostgreSQL; times are RFC 3339
-- text in UTC, days are YYYY-MM-DD text).

-- Avatars a user can see: the gallery without deleted ones.
CREATE VIEW avatars_live AS
SELECT avatar_id, owner, name, avatar_type, gender, status, photo_count, has_model,
       generations_completed, images_generated, last_generation_at, created_at, updated_at
  FROM gallery_avatars
 WHERE status <> 'deleted';

-- One row per day with activity: the headline numbers.
CREATE VIEW analytics_daily AS
WITH days AS (SELECT day FROM daily_avatars
              UNION SELECT day FROM daily_trainings
              UNION SELECT day FROM daily_generations
              UNION SELECT day FROM daily_active_users),
     a AS (SELECT day, sum(created) AS created, sum(deleted) AS deleted
             FROM daily_avatars GROUP BY day),
     t AS (SELECT day, sum(started) AS started, sum(completed) AS completed,
                  sum(failed) AS failed, sum(completed_seconds) AS completed_seconds
             FROM daily_trainings GROUP BY day),
     g AS (SELECT day, sum(requested) AS requested, sum(completed) AS completed,
                  sum(failed) AS failed, sum(images) AS images,
                  sum(completed_seconds) AS completed_seconds
             FROM daily_generations GROUP BY day),
     u AS (SELECT day, count(*) AS users FROM daily_active_users GROUP BY day)
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

-- Trainings per day and avatar type, with mean durations and the failure share.
CREATE VIEW analytics_trainings AS
SELECT day, avatar_type, started, completed, failed,
       CASE WHEN completed > 0 THEN completed_seconds / completed END AS avg_completed_seconds,
       CASE WHEN failed > 0 THEN failed_seconds / failed END          AS avg_failed_seconds,
       CASE WHEN completed + failed > 0
            THEN CAST(failed AS REAL) / (completed + failed) END AS failure_rate
  FROM daily_trainings;

-- Generations per day and preset, with the mean time to images.
CREATE VIEW analytics_generations AS
SELECT day, preset, requested, completed, failed, images,
       CASE WHEN completed > 0 THEN completed_seconds / completed END AS avg_completed_seconds,
       CASE WHEN completed + failed > 0
            THEN CAST(failed AS REAL) / (completed + failed) END AS failure_rate
  FROM daily_generations;

-- Per user: avatars (live and deleted), generations and images, first and last activity.
CREATE VIEW analytics_users AS
SELECT owner                                                        AS user_id,
       count(*)                                                     AS avatars,
       sum(CASE WHEN status <> 'deleted' THEN 1 ELSE 0 END)         AS avatars_live,
       CAST(sum(generations_completed) AS integer)                   AS generations_completed,
       CAST(sum(images_generated) AS integer)                        AS images_generated,
       min(created_at)                                              AS first_avatar_at,
       max(updated_at)                                              AS last_activity_at
  FROM gallery_avatars
 GROUP BY owner;
