"""Independent check of a latchkey access token with PyJWT (not latchkey's own code).

usage: verify_pyjwt.py BASE_URL ACCESS_TOKEN AUDIENCE
Exits 0 and prints VERIFIED when the token verifies through the served JWKS and carries
every claim of API.md / RFC 9068; exits 1 with the reason otherwise.
"""
import json
import sys
import urllib.request

import jwt
from jwt import PyJWKClient


def main() -> int:
    base, token, audience = sys.argv[1], sys.argv[2], sys.argv[3]
    with urllib.request.urlopen(f"{base}/.well-known/oauth-authorization-server") as r:
        metadata = json.load(r)
    # The metadata names the issuer's own public URL; fetch the JWKS from the server
    # under test at the same path.
    jwks_path = metadata["jwks_uri"].split("/", 3)[3]
    client = PyJWKClient(f"{base}/{jwks_path}")
    signing_key = client.get_signing_key_from_jwt(token)
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "at+jwt":
        print(f"typ is {header.get('typ')!r}, not at+jwt")
        return 1
    if header.get("kid") != signing_key.key_id:
        print("kid does not name the JWKS key")
        return 1
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=[signing_key.algorithm_name],
        audience=audience,
        issuer=metadata["issuer"],
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
    )
    for claim in ["client_id", "sid", "scope", "roles"]:
        if claim not in claims:
            print(f"missing claim {claim}")
            return 1
    if claims["iss"] != metadata["issuer"]:
        print("iss differs from the metadata issuer")
        return 1
    if not isinstance(claims["roles"], list) or not isinstance(claims["scope"], str):
        print("roles must be an array and scope a string")
        return 1
    print("VERIFIED", json.dumps({"alg": header["alg"], "kid": header["kid"]}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except jwt.PyJWTError as e:
        print(f"REFUSED: {type(e).__name__}: {e}")
        sys.exit(1)
