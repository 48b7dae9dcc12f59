"""Verifies JWT-SVIDs the way an OIDC relying party does, knowing only the issuer's discovery
URL: fetch `/.well-known/openid-configuration`, then let PyJWT's `PyJWKClient` fetch the JWKS
it names and pick the key by `kid`. Nothing SPIFFE-specific is used.

Usage: oidc_verify.py DISCOVERY_URL CA_FILE_OR_DASH
Reads lines `<audience> <token>` on stdin; answers each with `ok <sub> <kid>` or
`error <reason>` on stdout. One `PyJWKClient` serves every line, so a token signed after a key
rotation exercises its refetch of the key set on an unknown `kid`.
"""

import json
import ssl
import sys
import urllib.request

import jwt


def main() -> int:
    discovery_url, ca_file = sys.argv[1], sys.argv[2]
    context = ssl.create_default_context(cafile=ca_file) if ca_file != "-" else None
    with urllib.request.urlopen(discovery_url, context=context, timeout=10) as answer:
        discovery = json.load(answer)
    # cooldown_duration: PyJWKClient refetches the key set at most this often on an unknown
    # kid (30 s by default, against abuse); 1 s keeps a rotation test short.
    client = jwt.PyJWKClient(
        discovery["jwks_uri"], ssl_context=context, cooldown_duration=1, timeout=10
    )
    algorithms = discovery["id_token_signing_alg_values_supported"]
    for line in sys.stdin:
        audience, token = line.split()
        try:
            key = client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=audience,
                issuer=discovery["issuer"],
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
            kid = jwt.get_unverified_header(token)["kid"]
            print(f"ok {claims['sub']} {kid}", flush=True)
        except Exception as error:  # report every failure to the caller, keep serving
            print(f"error {type(error).__name__}: {error}".replace("\n", " "), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
