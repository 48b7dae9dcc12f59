-- Federation relationships created at run time; mirrors
-- migrations/sqlite/0003_federation_relationships.sql.
CREATE TABLE federation_relationships (
    trust_domain            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    bundle_endpoint_url     TEXT   NOT NULL,
    bundle_endpoint_profile TEXT   NOT NULL,
    endpoint_spiffe_id      TEXT   NOT NULL DEFAULT '',
    created_at              BIGINT NOT NULL
);
