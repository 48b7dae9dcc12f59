-- The operator seal (see migrations/sqlite/0005_operator_seal.sql). A change is announced
-- to every replica with NOTIFY on the policy channel (`nexus_policies`), payload `seal`.
ALTER TABLE root_key ADD COLUMN sealed_by TEXT;
ALTER TABLE root_key ADD COLUMN sealed_at BIGINT;
