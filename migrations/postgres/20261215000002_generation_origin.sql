-- Where a generation came from and the frame it was made in, for analysts ("images per pack",
-- "aspect ratios used", "upscales per day"). Rows from before this change stay NULL until
-- `aisha projections rebuild` replays their events: old events carry no origin, but their
-- arguments still give the frame.

-- generations: NULL origin_kind is a prompt the user typed; 'pack' and 'starter' name a pack;
-- 'upscale' points at the generation and image it enlarged. aspect_ratio is NULL for upscales,
-- which keep their source's frame.
ALTER TABLE generations
    ADD COLUMN origin_kind    text,
    ADD COLUMN pack           text,
    ADD COLUMN upscale_of     text,
    ADD COLUMN upscale_image  bigint,
    ADD COLUMN upscale_factor bigint,
    ADD COLUMN aspect_ratio   text;

-- The analytics projection remembers these of a pending generation, so its result counts
-- under the same pack, frame or factor.
ALTER TABLE analytics_open_generations
    ADD COLUMN endpoint       text,
    ADD COLUMN origin_kind    text,
    ADD COLUMN pack           text,
    ADD COLUMN upscale_factor bigint,
    ADD COLUMN aspect_ratio   text;

-- Daily counts by UTC day of the event, as the other daily_* tables.
CREATE TABLE daily_packs
(
    day         date   NOT NULL,
    pack        text   NOT NULL,
    origin_kind text   NOT NULL,
    requested   bigint NOT NULL DEFAULT 0,
    completed   bigint NOT NULL DEFAULT 0,
    failed      bigint NOT NULL DEFAULT 0,
    images      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, pack, origin_kind)
);

CREATE TABLE daily_aspect_ratios
(
    day          date   NOT NULL,
    aspect_ratio text   NOT NULL,
    endpoint     text   NOT NULL,
    generations  bigint NOT NULL DEFAULT 0,
    images       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, aspect_ratio, endpoint)
);

CREATE TABLE daily_upscales
(
    day       date   NOT NULL,
    factor    bigint NOT NULL,
    requested bigint NOT NULL DEFAULT 0,
    completed bigint NOT NULL DEFAULT 0,
    failed    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, factor)
);

-- Views for analysts (the same names and columns on SQLite).

-- Generations per day, pack and origin (a pack the user chose, or the starter samples).
CREATE VIEW analytics_packs AS
SELECT day, pack, origin_kind, requested, completed, failed, images
  FROM daily_packs;

-- Generations requested and images returned per day, frame and generator endpoint.
CREATE VIEW analytics_aspect_ratios AS
SELECT day, aspect_ratio, endpoint, generations, images
  FROM daily_aspect_ratios;

-- Upscales per day and factor (2 or 4).
CREATE VIEW analytics_upscales AS
SELECT day, factor, requested, completed, failed
  FROM daily_upscales;
