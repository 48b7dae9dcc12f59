-- Each version's deletion time, fixed when it is written (see
-- migrations/sqlite/0008_version_expiry.sql).
ALTER TABLE secret_versions ADD COLUMN expires_at BIGINT;

UPDATE secret_versions SET expires_at = (
    SELECT CASE WHEN s.delete_version_after > 9223372036854775807 - secret_versions.created_at
                THEN 9223372036854775807
                ELSE secret_versions.created_at + s.delete_version_after END
    FROM secrets s WHERE s.path = secret_versions.path)
WHERE EXISTS (SELECT 1 FROM secrets s
              WHERE s.path = secret_versions.path AND s.delete_version_after > 0);

CREATE INDEX secret_versions_expires_at ON secret_versions (expires_at)
    WHERE expires_at IS NOT NULL;
