-- Each version's deletion time, fixed when the version is written (Vault's `deletion_time`
-- under `delete_version_after`): a later change of the secret's delete_version_after
-- applies to versions written after it, never moves an existing version's deadline.
--   expires_at: unix milliseconds from which the version is unreadable and may be pruned
--   (NULL: never). Versions stored before this migration get the deadline they had under
--   the rule they were written under (created_at + the secret's delete_version_after), so
--   nothing becomes readable or unreadable by the upgrade.
-- The partial index lets the periodic prune find expired versions without a full scan.
ALTER TABLE secret_versions ADD COLUMN expires_at INTEGER;

UPDATE secret_versions SET expires_at = (
    SELECT CASE WHEN s.delete_version_after > 9223372036854775807 - secret_versions.created_at
                THEN 9223372036854775807
                ELSE secret_versions.created_at + s.delete_version_after END
    FROM secrets s WHERE s.path = secret_versions.path)
WHERE EXISTS (SELECT 1 FROM secrets s
              WHERE s.path = secret_versions.path AND s.delete_version_after > 0);

CREATE INDEX secret_versions_expires_at ON secret_versions (expires_at)
    WHERE expires_at IS NOT NULL;
