-- An unfinished root key rotation (see migrations/sqlite/0003_root_key_rotation.sql).
CREATE TABLE root_key_rotation (
    id                 BIGINT  NOT NULL PRIMARY KEY CHECK (id = 1),
    previous_key_check BYTEA   NOT NULL,
    sealed_key         BYTEA   NOT NULL,
    started_at         BIGINT  NOT NULL
);
