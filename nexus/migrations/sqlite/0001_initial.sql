-- Initial Nexus schema (SQLite).
--
-- Conventions shared with migrations/postgres (the Rust code is the same for both):
--   * times are unix milliseconds in 64-bit integers;
--   * version numbers and counts are 64-bit integers;
--   * sealed records are opaque blobs: the store never sees a plaintext or a key.
-- Tables are STRICT so SQLite enforces the declared column types.

-- The root key's public record: its key-check value and Shamir parameters. A single row
-- (id is always 1), inserted once and never overwritten.
CREATE TABLE root_key (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    key_check  BLOB    NOT NULL,
    threshold  INTEGER NOT NULL,
    shares     INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- One row per secret path. latest_version is the highest version ever written (versions
-- are never reused); current_version the highest non-deleted one (0: none);
-- oldest_version the lowest stored non-deleted one (0: none). max_versions is captured
-- when the secret is created.
CREATE TABLE secrets (
    path            TEXT    NOT NULL PRIMARY KEY,
    current_version INTEGER NOT NULL,
    oldest_version  INTEGER NOT NULL,
    latest_version  INTEGER NOT NULL,
    max_versions    INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    created_by      TEXT    NOT NULL
) STRICT;

-- One row per stored version; deleted_at is set by a soft delete. Pruned and destroyed
-- versions are deleted rows.
CREATE TABLE secret_versions (
    path        TEXT    NOT NULL REFERENCES secrets (path) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    deleted_at  INTEGER,
    created_by  TEXT    NOT NULL,
    wrapped_key BLOB    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    PRIMARY KEY (path, version)
) STRICT;

-- Policies by name; the body (patterns and permissions) is sealed.
CREATE TABLE policies (
    name        TEXT    NOT NULL PRIMARY KEY,
    wrapped_key BLOB    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
