-- The key of the cipher service (see migrations/sqlite/0004_cipher_key.sql).
CREATE TABLE cipher_key (
    id          BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    wrapped_key BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL
);
