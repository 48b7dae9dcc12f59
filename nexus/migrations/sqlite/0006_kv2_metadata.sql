-- KV v2 metadata per secret, named as Vault names it (see migrations/postgres/0006 too):
--   custom_metadata: a JSON object of strings (at most 64 keys; not secret, so not sealed);
--   cas_required: 1 if every write to the secret must carry a check-and-set version;
--   delete_version_after: milliseconds after which a version expires (0: never). An expired
--   version is unreadable at once and deleted from storage by the secret's next write.
-- max_versions existed already; a metadata update may now change it.
ALTER TABLE secrets ADD COLUMN custom_metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE secrets ADD COLUMN cas_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE secrets ADD COLUMN delete_version_after INTEGER NOT NULL DEFAULT 0;
