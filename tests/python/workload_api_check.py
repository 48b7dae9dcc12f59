"""Off-the-shelf py-spiffe against our agent's Workload API, with no gRPC options at all.

Run by tests/tests/jwt.rs (`py_spiffe_works_without_grpc_options`): it fetches an X.509-SVID
and checks its chain against the X.509 bundle, fetches a JWT-SVID and has it validated both by
the agent (ValidateJWTSVID) and offline against `fetch_jwt_bundles()`, and checks that a wrong
audience is refused both ways. Prints one `ok ...` line per check; any failure raises and
exits non-zero.

Usage: python3 workload_api_check.py unix:///path/to/api.sock TRUST_DOMAIN AUDIENCE
"""

import sys

from cryptography.hazmat.primitives.asymmetric import ec
from spiffe import JwtSvid, TrustDomain, WorkloadApiClient


def main():
    socket, trust_domain, audience = sys.argv[1], TrustDomain(sys.argv[2]), sys.argv[3]
    # The point of this script: the plain client, exactly as a user would create it.
    with WorkloadApiClient(socket_path=socket) as client:
        svid = client.fetch_x509_svid()
        bundle = client.fetch_x509_bundles().get_bundle_for_trust_domain(trust_domain)
        leaf = svid.leaf
        issuers = [ca for ca in bundle.x509_authorities if ca.subject == leaf.issuer]
        if not issuers:
            raise SystemExit("no CA in the bundle issued the X.509-SVID")
        issuers[0].public_key().verify(
            leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm)
        )
        print(f"ok x509 {svid.spiffe_id}")

        jwt_svid = client.fetch_jwt_svid(audience={audience})
        print(f"ok jwt fetched {jwt_svid.spiffe_id}")

        validated = client.validate_jwt_svid(jwt_svid.token, audience)
        print(f"ok jwt validated by the agent {validated.spiffe_id}")

        jwt_bundle = client.fetch_jwt_bundles().get_bundle_for_trust_domain(trust_domain)
        offline = JwtSvid.parse_and_validate(jwt_svid.token, jwt_bundle, {audience})
        print(f"ok jwt validated offline {offline.spiffe_id}")

        try:
            client.validate_jwt_svid(jwt_svid.token, audience + "-other")
        except Exception as err:  # py-spiffe wraps the gRPC InvalidArgument
            print(f"ok wrong audience refused by the agent: {type(err).__name__}")
        else:
            raise SystemExit("the agent accepted a token for another audience")
        try:
            JwtSvid.parse_and_validate(jwt_svid.token, jwt_bundle, {audience + "-other"})
        except Exception as err:
            print(f"ok wrong audience refused offline: {type(err).__name__}")
        else:
            raise SystemExit("offline validation accepted a token for another audience")


if __name__ == "__main__":
    main()
