-- Rekey: the keeper set and its generation (see migrations/sqlite/0007_keeper_set.sql).
ALTER TABLE root_key ADD COLUMN keeper_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE root_key ADD COLUMN keeper_urls TEXT;
ALTER TABLE root_key ADD COLUMN rekey_started_at BIGINT;
ALTER TABLE root_key ADD COLUMN rekey_by TEXT;
