-- Policy generation (SQLite).
--
-- A counter that every policy change (put or delete) increments in the same transaction,
-- so a Nexus can tell whether its compiled policy cache is current by comparing the
-- generation it loaded with this one. A single row (id is always 1).
CREATE TABLE policy_generation (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
) STRICT;

INSERT INTO policy_generation (id, generation) VALUES (1, 0);
