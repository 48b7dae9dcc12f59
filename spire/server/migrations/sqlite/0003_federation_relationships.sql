-- Federation relationships created at run time (`spire-server federation create`), SPIRE's
-- federated_trust_domains: how to fetch another trust domain's bundle. Relationships in the
-- config file are not stored; they override a stored one for the same trust domain.
CREATE TABLE federation_relationships (
    trust_domain            TEXT    NOT NULL PRIMARY KEY,
    bundle_endpoint_url     TEXT    NOT NULL,
    -- 'https_spiffe' or 'https_web'.
    bundle_endpoint_profile TEXT    NOT NULL,
    -- https_spiffe: the SPIFFE ID the endpoint presents; '' for https_web.
    endpoint_spiffe_id      TEXT    NOT NULL DEFAULT '',
    created_at              INTEGER NOT NULL
) STRICT;
