-- The avatar "Generate" goes to without asking; NULL: ask (the last used one is offered first).
ALTER TABLE telegram_users ADD COLUMN main_avatar_id text;
