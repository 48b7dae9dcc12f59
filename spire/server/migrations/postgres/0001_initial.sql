-- Initial SPIRE server schema (PostgreSQL).
--
-- Mirrors migrations/sqlite/0001_initial.sql column for column (the Rust code is the
-- same for both backends):
--   * timestamps are unix seconds in BIGINT, 0 meaning "never"/"unset";
--   * booleans are BIGINT 0/1 (sqlx's Any driver decodes these portably);
--   * lists and byte documents are JSON text;
--   * key columns use COLLATE "C" so that ORDER BY sorts byte-wise, as SQLite does.

CREATE TABLE entries (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    spiffe_id       TEXT COLLATE "C" NOT NULL,
    parent_id       TEXT COLLATE "C" NOT NULL,
    -- Canonical digest of the selector SET (sorted, de-duplicated); see
    -- datastore::entries::selectors_key. Together with spiffe_id and parent_id it
    -- makes two entries with the same identity mapping impossible, even under
    -- concurrent creates.
    selectors_key   TEXT   NOT NULL,
    x509_svid_ttl   BIGINT NOT NULL DEFAULT 0,
    jwt_svid_ttl    BIGINT NOT NULL DEFAULT 0,
    dns_names       TEXT   NOT NULL DEFAULT '[]',
    federates_with  TEXT   NOT NULL DEFAULT '[]',
    hint            TEXT   NOT NULL DEFAULT '',
    admin           BIGINT NOT NULL DEFAULT 0,
    downstream      BIGINT NOT NULL DEFAULT 0,
    revision_number BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX entries_unique_mapping ON entries (spiffe_id, parent_id, selectors_key);
CREATE INDEX entries_parent_id ON entries (parent_id);

CREATE TABLE entry_selectors (
    entry_id TEXT COLLATE "C" NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    type     TEXT   NOT NULL,
    value    TEXT   NOT NULL,
    PRIMARY KEY (entry_id, position)
);

CREATE INDEX entry_selectors_type_value ON entry_selectors (type, value);

CREATE TABLE join_tokens (
    token      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);

CREATE TABLE attested_agents (
    spiffe_id        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    attestation_type TEXT   NOT NULL,
    serial_number    TEXT   NOT NULL,
    expires_at       BIGINT NOT NULL,
    selectors        TEXT   NOT NULL DEFAULT '[]',
    can_reattest     BIGINT NOT NULL DEFAULT 0,
    banned           BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE bundles (
    trust_domain     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    x509_authorities TEXT   NOT NULL DEFAULT '[]',
    jwt_authorities  TEXT   NOT NULL DEFAULT '[]',
    sequence_number  BIGINT NOT NULL,
    refresh_hint     BIGINT NOT NULL DEFAULT 0
);
