-- Initial SPIRE server schema (SQLite).
--
-- Conventions shared with migrations/postgres (the Rust code is the same for both):
--   * timestamps are unix seconds in 64-bit integers, 0 meaning "never"/"unset";
--   * booleans are integers 0/1 (sqlx's Any driver decodes these portably);
--   * lists and byte documents are JSON text.
-- Tables are STRICT so SQLite enforces the declared column types.

CREATE TABLE entries (
    id              TEXT    NOT NULL PRIMARY KEY,
    spiffe_id       TEXT    NOT NULL,
    parent_id       TEXT    NOT NULL,
    -- Canonical digest of the selector SET (sorted, de-duplicated); see
    -- datastore::entries::selectors_key. Together with spiffe_id and parent_id it
    -- makes two entries with the same identity mapping impossible, even under
    -- concurrent creates.
    selectors_key   TEXT    NOT NULL,
    x509_svid_ttl   INTEGER NOT NULL DEFAULT 0,
    jwt_svid_ttl    INTEGER NOT NULL DEFAULT 0,
    dns_names       TEXT    NOT NULL DEFAULT '[]',
    federates_with  TEXT    NOT NULL DEFAULT '[]',
    hint            TEXT    NOT NULL DEFAULT '',
    admin           INTEGER NOT NULL DEFAULT 0,
    downstream      INTEGER NOT NULL DEFAULT 0,
    revision_number INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE UNIQUE INDEX entries_unique_mapping ON entries (spiffe_id, parent_id, selectors_key);
CREATE INDEX entries_parent_id ON entries (parent_id);

CREATE TABLE entry_selectors (
    entry_id TEXT    NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    type     TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    PRIMARY KEY (entry_id, position)
) STRICT;

CREATE INDEX entry_selectors_type_value ON entry_selectors (type, value);

CREATE TABLE join_tokens (
    token      TEXT    NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);

CREATE TABLE attested_agents (
    spiffe_id        TEXT    NOT NULL PRIMARY KEY,
    attestation_type TEXT    NOT NULL,
    serial_number    TEXT    NOT NULL,
    expires_at       INTEGER NOT NULL,
    selectors        TEXT    NOT NULL DEFAULT '[]',
    can_reattest     INTEGER NOT NULL DEFAULT 0,
    banned           INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE bundles (
    trust_domain     TEXT    NOT NULL PRIMARY KEY,
    x509_authorities TEXT    NOT NULL DEFAULT '[]',
    jwt_authorities  TEXT    NOT NULL DEFAULT '[]',
    sequence_number  INTEGER NOT NULL,
    refresh_hint     INTEGER NOT NULL DEFAULT 0
) STRICT;
