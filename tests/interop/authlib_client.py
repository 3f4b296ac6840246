"""latchkey driven by Authlib (not latchkey's own code), as a Python app and resource
server would use it, with no glue but configuration.

usage: authlib_client.py BASE_URL USERNAME PASSWORD API_AUDIENCE RS_ID RS_SECRET

BASE_URL is where the server under test listens; the metadata names the issuer's public
URL, whose paths are fetched from BASE_URL. Prints one `OK <step>` line per step and
exits 0; any failure raises (exit 1) with the reason.

1. RFC 8414 metadata through `AuthorizationServerMetadata.validate()`, all of it
   (`response_types_supported` included, now that there is an authorization endpoint).
2. Authlib's RFC 9068 `JWTBearerTokenValidator` accepts the token of a user without
   roles and of a login without scope (no `"roles": []`, no `"scope": ""`), and a scoped
   token for an API; it refuses a token for another audience.
3. `OAuth2Session` refreshes by itself across several access-token expiries, each time
   with rotation (a new refresh token), and `/me` keeps answering.
4. Introspection and revocation as a resource server whose secret contains `+`, `%` and
   `&` (Authlib sends HTTP Basic credentials raw), and with `client_secret_post`.
"""
import json
import os
import sys
import time
import urllib.parse

# latchkey under test listens on plain http on loopback; Authlib refuses that otherwise.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

import requests  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.oauth2.rfc6750.errors import InvalidTokenError  # noqa: E402
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata  # noqa: E402
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator  # noqa: E402


def local(base: str, public_url: str) -> str:
    """The server under test's URL for a path of the issuer's public URL."""
    return base + urllib.parse.urlparse(public_url).path


def ok(step: str) -> None:
    print(f"OK {step}", flush=True)


def check_metadata(base: str) -> dict:
    metadata = AuthorizationServerMetadata(
        requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=10).json()
    )
    # With the authorization endpoint (RFC 8252 native apps), the whole of RFC 8414 passes.
    metadata.validate()
    assert "id_token_signing_alg_values_supported" not in metadata
    for endpoint in ("introspection", "revocation"):
        methods = metadata[f"{endpoint}_endpoint_auth_methods_supported"]
        assert "client_secret_post" in methods and "client_secret_basic" in methods, methods
    ok("metadata: validate() asks only for response_types_supported; every other member is valid")
    return dict(metadata)


def login(base: str, username: str, password: str, **extra) -> dict:
    res = requests.post(
        f"{base}/login",
        json={"username": username, "password": password, **extra},
        timeout=10,
    )
    assert res.status_code == 200, res.text
    return res.json()


def check_rfc9068_validator(base: str, metadata: dict, username: str, password: str, api: str) -> None:
    jwks = requests.get(local(base, metadata["jwks_uri"]), timeout=10).json()

    class Validator(JWTBearerTokenValidator):
        def get_jwks(self):
            return jwks

    def accepted(validator, token, scopes=None):
        claims = validator.authenticate_token(token)
        validator.validate_token(claims, scopes, None)
        return claims

    issuer = metadata["issuer"]
    # The default client's token is for latchkey itself: aud = the issuer.
    plain = login(base, username, password)["access_token"]
    claims = accepted(Validator(issuer=issuer, resource_server=issuer), plain)
    assert "roles" not in claims and "scope" not in claims, claims
    assert claims["amr"] == ["pwd"] and isinstance(claims["auth_time"], int), claims
    scoped = login(base, username, password, client_id="mobile", scope="read")["access_token"]
    claims = accepted(Validator(issuer=issuer, resource_server=api), scoped, ["read"])
    assert claims["scope"] == "read", claims
    try:
        accepted(Validator(issuer=issuer, resource_server="https://someone-else.example"), scoped)
        raise AssertionError("a token for another audience was accepted")
    except InvalidTokenError:
        pass
    ok("rfc9068 validator: tokens without roles or scope and a scoped API token verify; another audience is refused")


def check_auto_refresh(base: str, metadata: dict, username: str, password: str, expiries: int) -> None:
    first = login(base, username, password)
    lifetime = first["expires_in"]
    seen = [first["refresh_token"]]

    def update_token(token, refresh_token=None, access_token=None):
        seen.append(token["refresh_token"])

    session = OAuth2Session(
        client_id="default",
        token=first,
        token_endpoint=local(base, metadata["token_endpoint"]),
        token_endpoint_auth_method="none",
        update_token=update_token,
        leeway=1,
    )
    for i in range(expiries):
        # Past the access token's expiry (less Authlib's leeway): the next request
        # refreshes first.
        time.sleep(lifetime)
        res = session.get(f"{base}/me", timeout=10)
        assert res.status_code == 200, (i, res.status_code, res.text)
        assert res.json()["username"] == username
        assert len(seen) == i + 2, f"expiry {i}: no refresh happened ({len(seen) - 1} so far)"
    assert len(set(seen)) == len(seen), "every refresh rotated the refresh token"
    ok(f"OAuth2Session refreshed by itself across {expiries} expiries, rotating each time")


def check_resource_server(base: str, metadata: dict, username: str, password: str, rs_id: str, rs_secret: str) -> None:
    assert any(c in rs_secret for c in "+%&"), "the point is a secret Basic would mangle"
    introspect_url = local(base, metadata["introspection_endpoint"])
    revoke_url = local(base, metadata["revocation_endpoint"])
    for method in ("client_secret_basic", "client_secret_post"):
        tokens = login(base, username, password, client_id="mobile")
        rs = OAuth2Session(
            client_id=rs_id,
            client_secret=rs_secret,
            token_endpoint_auth_method=method,
            revocation_endpoint_auth_method=method,
        )
        answer = rs.introspect_token(introspect_url, token=tokens["access_token"])
        assert answer.status_code == 200, (method, answer.status_code, answer.text)
        assert answer.json()["active"] is True, answer.json()
        refresh = rs.introspect_token(introspect_url, token=tokens["refresh_token"])
        assert refresh.json() == {"active": False}, refresh.json()
        revoked = rs.revoke_token(revoke_url, token=tokens["access_token"])
        assert revoked.status_code == 200, (method, revoked.status_code, revoked.text)
        after = rs.introspect_token(introspect_url, token=tokens["access_token"])
        assert after.json() == {"active": False}, after.json()
        wrong = OAuth2Session(client_id=rs_id, client_secret=rs_secret + "x", token_endpoint_auth_method=method)
        assert wrong.introspect_token(introspect_url, token=tokens["access_token"]).status_code == 401
        ok(f"introspection and revocation with a +%& secret by {method}")


def main() -> int:
    base, username, password, api, rs_id, rs_secret = sys.argv[1:7]
    expiries = int(os.environ.get("AUTHLIB_EXPIRIES", "3"))
    metadata = check_metadata(base)
    check_rfc9068_validator(base, metadata, username, password, api)
    check_auto_refresh(base, metadata, username, password, expiries)
    check_resource_server(base, metadata, username, password, rs_id, rs_secret)
    print(json.dumps({"done": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
