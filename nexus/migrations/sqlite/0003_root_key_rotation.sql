-- An unfinished root key rotation: written in the rotation's transaction, deleted once every
-- keeper holds a shard of the new key. sealed_key is the new root key sealed under the
-- previous key's KEK, so a Nexus whose keepers still hold shards of the previous key (it
-- restarted before re-seeding them) rebuilds that key and recovers the new one.
-- previous_key_check identifies the previous key.
CREATE TABLE root_key_rotation (
    id                 INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    previous_key_check BLOB    NOT NULL,
    sealed_key         BLOB    NOT NULL,
    started_at         INTEGER NOT NULL
) STRICT;
