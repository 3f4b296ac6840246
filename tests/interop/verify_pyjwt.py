"""Independent check of latchkey access tokens with PyJWT (not latchkey's own code).

usage: verify_pyjwt.py BASE_URL AUDIENCE < tokens
Reads one token per line and answers one line per token: `VERIFIED {"alg":…,"kid":…}`
when it verifies through the served JWKS and carries every claim of docs/contract.md "Access token" / RFC 9068,
`REFUSED reason` otherwise. One PyJWKClient serves every line, as in a long-running
resource server, so a key rotation exercises its cache and its refetch on unknown kid.
"""
import json
import sys
import urllib.request

import jwt
from jwt import PyJWKClient


def check(client: PyJWKClient, metadata: dict, token: str, audience: str) -> str:
    header = jwt.get_unverified_header(token)
    signing_key = client.get_signing_key_from_jwt(token)
    if header.get("typ") != "at+jwt":
        return f"REFUSED typ is {header.get('typ')!r}, not at+jwt"
    if header.get("kid") != signing_key.key_id:
        return "REFUSED kid does not name the JWKS key"
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=[signing_key.algorithm_name],
        audience=audience,
        issuer=metadata["issuer"],
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
    )
    for claim in ["client_id", "sid", "auth_time", "amr"]:
        if claim not in claims:
            return f"REFUSED missing claim {claim}"
    # scope and roles are omitted when empty; present, they are never empty.
    if "roles" in claims and not (isinstance(claims["roles"], list) and claims["roles"]):
        return "REFUSED roles must be a non-empty array when present"
    if "scope" in claims and not (isinstance(claims["scope"], str) and claims["scope"]):
        return "REFUSED scope must be a non-empty string when present"
    return "VERIFIED " + json.dumps({"alg": header["alg"], "kid": header["kid"]})


def main() -> int:
    base, audience = sys.argv[1], sys.argv[2]
    with urllib.request.urlopen(f"{base}/.well-known/oauth-authorization-server") as r:
        metadata = json.load(r)
    # The metadata names the issuer's public URL; fetch the JWKS from the server under
    # test at the same path.
    jwks_path = metadata["jwks_uri"].split("/", 3)[3]
    client = PyJWKClient(f"{base}/{jwks_path}")
    for line in sys.stdin:
        token = line.strip()
        try:
            answer = check(client, metadata, token, audience)
        except jwt.PyJWTError as e:
            answer = f"REFUSED {type(e).__name__}: {e}"
        print(answer, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
