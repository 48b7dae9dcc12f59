-- KV v2 metadata per secret (see migrations/sqlite/0006_kv2_metadata.sql). Integers rather
-- than BOOLEAN so that both databases decode the same way through sqlx's Any driver.
ALTER TABLE secrets ADD COLUMN custom_metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE secrets ADD COLUMN cas_required BIGINT NOT NULL DEFAULT 0;
ALTER TABLE secrets ADD COLUMN delete_version_after BIGINT NOT NULL DEFAULT 0;
