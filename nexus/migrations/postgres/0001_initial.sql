-- Initial Nexus schema (PostgreSQL).
--
-- Mirrors migrations/sqlite/0001_initial.sql column for column (the Rust code is the
-- same for both backends):
--   * times are unix milliseconds in BIGINT;
--   * version numbers and counts are BIGINT;
--   * sealed records are opaque BYTEA: the store never sees a plaintext or a key;
--   * key columns use COLLATE "C" so that ORDER BY sorts byte-wise, as SQLite does.

-- The root key's public record: its key-check value and Shamir parameters. A single row
-- (id is always 1), inserted once and never overwritten.
CREATE TABLE root_key (
    id         BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    key_check  BYTEA  NOT NULL,
    threshold  BIGINT NOT NULL,
    shares     BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- One row per secret path. latest_version is the highest version ever written (versions
-- are never reused); current_version the highest non-deleted one (0: none);
-- oldest_version the lowest stored non-deleted one (0: none). max_versions is captured
-- when the secret is created.
CREATE TABLE secrets (
    path            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    current_version BIGINT NOT NULL,
    oldest_version  BIGINT NOT NULL,
    latest_version  BIGINT NOT NULL,
    max_versions    BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    created_by      TEXT   NOT NULL
);

-- One row per stored version; deleted_at is set by a soft delete. Pruned and destroyed
-- versions are deleted rows.
CREATE TABLE secret_versions (
    path        TEXT COLLATE "C" NOT NULL REFERENCES secrets (path) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    deleted_at  BIGINT,
    created_by  TEXT   NOT NULL,
    wrapped_key BYTEA  NOT NULL,
    ciphertext  BYTEA  NOT NULL,
    PRIMARY KEY (path, version)
);

-- Policies by name; the body (patterns and permissions) is sealed.
CREATE TABLE policies (
    name        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    wrapped_key BYTEA  NOT NULL,
    ciphertext  BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
