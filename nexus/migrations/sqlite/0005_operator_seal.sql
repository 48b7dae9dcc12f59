-- The operator seal (`spike operator seal`): who sealed Nexus and when, on the root key's
-- row. Both NULL: not sealed. While set, no Nexus on this datastore unseals from its keepers
-- (not even after a restart) until `spike operator unseal` clears it, and every sealed write
-- is refused (the write fence reads this row).
ALTER TABLE root_key ADD COLUMN sealed_by TEXT;
ALTER TABLE root_key ADD COLUMN sealed_at INTEGER;
