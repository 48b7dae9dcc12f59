-- Rekey (`spike operator rekey`): the keeper set and its generation, on the root key's row.
-- keeper_generation is 0 as first configured and one more after each rekey; keepers hold
-- one shard per generation, and a Nexus asks them for the generation stored here.
-- keeper_urls is the set a rekey chose (a JSON array of URLs, shard 1 first); NULL: the
-- keepers Nexus is configured with. threshold and shares (0001) are the set's parameters.
-- rekey_started_at / rekey_by claim a rekey in progress (one at a time across replicas);
-- a claim older than a minute is stale (its Nexus died) and may be taken over.
ALTER TABLE root_key ADD COLUMN keeper_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE root_key ADD COLUMN keeper_urls TEXT;
ALTER TABLE root_key ADD COLUMN rekey_started_at INTEGER;
ALTER TABLE root_key ADD COLUMN rekey_by TEXT;
