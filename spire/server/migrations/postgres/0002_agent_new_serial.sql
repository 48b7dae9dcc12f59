-- An agent SVID issued by a renewal is "new" until the agent first calls with it; only then
-- does it replace the current one (SPIRE's new_serial_number / new_expires_at). Until that
-- first call both SVIDs are accepted, so a renewal whose answer is lost does not lock the agent
-- out; after it, the superseded SVID is refused. '' and 0 mean "no renewal pending".
-- Mirrors migrations/sqlite/0002_agent_new_serial.sql.
ALTER TABLE attested_agents ADD COLUMN new_serial_number TEXT NOT NULL DEFAULT '';
ALTER TABLE attested_agents ADD COLUMN new_expires_at BIGINT NOT NULL DEFAULT 0;
