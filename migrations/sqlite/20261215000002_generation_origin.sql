-- Where a generation came from and the frame it was made in, for analysts ("images per pack",
-- "aspect ratios used", "upscales per day"). Rows from before this change stay NULL until
-- `aisha projections rebuild` replays their events: old events carry no origin, but their
-- arguments still give the frame.

-- generations: NULL origin_kind is a prompt the user typed; 'pack' and 'starter' name a pack;
-- 'upscale' points at the generation and image it enlarged. aspect_ratio is NULL for upscales,
-- which keep their source's frame.
ALTER TABLE generations ADD COLUMN origin_kind text;
ALTER TABLE generations ADD COLUMN pack text;
ALTER TABLE generations ADD COLUMN upscale_of text;
ALTER TABLE generations ADD COLUMN upscale_image integer;
ALTER TABLE generations ADD COLUMN upscale_factor integer;
ALTER TABLE generations ADD COLUMN aspect_ratio text;

-- The analytics projection remembers these of a pending generation, so its result counts
-- under the same pack, frame or factor.
ALTER TABLE analytics_open_generations ADD COLUMN endpoint text;
ALTER TABLE analytics_open_generations ADD COLUMN origin_kind text;
ALTER TABLE analytics_open_generations ADD COLUMN pack text;
ALTER TABLE analytics_open_generations ADD COLUMN upscale_factor integer;
ALTER TABLE analytics_open_generations ADD COLUMN aspect_ratio text;

-- Daily counts by UTC day of the event, as the other daily_* tables.
CREATE TABLE daily_packs
(
    day         text    NOT NULL,
    pack        text    NOT NULL,
    origin_kind text    NOT NULL,
    requested   integer NOT NULL DEFAULT 0,
    completed   integer NOT NULL DEFAULT 0,
    failed      integer NOT NULL DEFAULT 0,
    images      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (day, pack, origin_kind)
) STRICT;

CREATE TABLE daily_aspect_ratios
(
    day          text    NOT NULL,
    aspect_ratio text    NOT NULL,
    endpoint     text    NOT NULL,
    generations  integer NOT NULL DEFAULT 0,
    images       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (day, aspect_ratio, endpoint)
) STRICT;

CREATE TABLE daily_upscales
(
    day       text    NOT NULL,
    factor    integer NOT NULL,
    requested integer NOT NULL DEFAULT 0,
    completed integer NOT NULL DEFAULT 0,
    failed    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (day, factor)
) STRICT;

-- Views for analysts (the same names and columns as on PostgreSQL; days are YYYY-MM-DD text).

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
