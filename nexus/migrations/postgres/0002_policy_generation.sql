-- Policy generation (PostgreSQL).
--
-- A counter that every policy change (put or delete) increments in the same transaction,
-- so a Nexus can tell whether its compiled policy cache is current by comparing the
-- generation it loaded with this one. A single row (id is always 1).
--
-- Several Nexus replicas may share this database: each increment also sends the new
-- generation on the notification channel `nexus_policies` (delivered when the transaction
-- commits, never if it rolls back), and every replica LISTENs there and reloads its cache.
-- The channel name is `policy_sync::CHANNEL` in the Nexus source.
CREATE TABLE policy_generation (
    id         BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);

INSERT INTO policy_generation (id, generation) VALUES (1, 0);

CREATE FUNCTION nexus_notify_policy_generation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nexus_policies', NEW.generation::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER policy_generation_notify
    AFTER UPDATE ON policy_generation
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_policy_generation();
