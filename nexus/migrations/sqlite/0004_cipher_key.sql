-- The key of the cipher service (/v1/cipher/*): random, created on first use, stored wrapped
-- under the root key's KEK like a record's data key, and re-wrapped by a root key rotation,
-- so ciphertexts handed to applications stay decryptable across rotations.
CREATE TABLE cipher_key (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    wrapped_key BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
