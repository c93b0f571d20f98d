-- What each user chose last on the prompt screen: images per request (1–4) and the frame.
-- NULL: not chosen yet (one image, the preset's own frame).
ALTER TABLE telegram_users
    ADD COLUMN images_per_request integer,
    ADD COLUMN aspect_ratio text;
