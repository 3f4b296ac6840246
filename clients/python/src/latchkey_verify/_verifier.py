"""Offline verification of latchkey access tokens, following the revocation feed.

Mirrors the Rust crate ``latchkey-verify`` (crates/latchkey-verify); the server side is
latchkey's docs/contract.md ("Access token", "Revocation feed", "Second factor and
step-up").

Fail-safe choices (as the Rust crate):

- latchkey unreachable: verification goes on with the cached keys (a failed refetch
  keeps them), and the revoked set keeps what it knows.
- The feed is stale once nothing was heard from it (event, heartbeat or successful
  poll) for ``max_staleness`` seconds; then every token is refused with ``feed_stale``
  (or, with ``on_stale="accept"``, accepted without revocations).
- An unknown ``kid`` refetches the JWKS at most once per ``min_refetch_interval``, one
  fetch at a time, so a flood of made-up kids costs latchkey one request per interval.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import httpx
import jwt
from jwt.api_jws import PyJWS

#: Tokens longer than this are refused before any parsing (as latchkey does).
MAX_TOKEN_BYTES = 4096

ALGORITHMS = ("ES256", "EdDSA", "RS256")
# RFC 8725 §3.10: never trust keys named by the token; RFC 7515 §4.1.11: latchkey uses
# no critical extensions, so any `crit` is one we do not understand.
FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c", "crit")
#: Seconds the stream may stay silent (heartbeats come every 15 s) before it is reopened.
SILENCE = 45.0
MIN_BACKOFF = 0.25
MAX_BACKOFF = 5.0

Claims = Dict[str, Any]
FeedMode = Literal["stream", "poll", "off"]
Code = Literal["invalid_token", "revoked", "feed_stale", "insufficient_user_authentication"]


class VerifyError(Exception):
    """Why a token was refused.

    ``code`` is what the resource server answers (RFC 6750 §3.1, RFC 9470 §3):
    ``invalid_token``, ``revoked``, ``feed_stale`` or
    ``insufficient_user_authentication``; ``reason`` says more for ``invalid_token``.
    """

    def __init__(self, code: Code, reason: str, message: str, max_age: Optional[int] = None):
        super().__init__(message)
        self.code: Code = code
        self.reason = reason
        self.max_age = max_age

    @property
    def status(self) -> int:
        """503 for ``feed_stale`` (not the token's fault), else 401."""
        return 503 if self.code == "feed_stale" else 401

    @property
    def www_authenticate(self) -> str:
        """The ``WWW-Authenticate`` value to answer with (RFC 6750 §3, RFC 9470 §3)."""
        if self.code == "insufficient_user_authentication":
            return step_up_challenge(self.max_age)
        if self.code == "feed_stale":
            return 'Bearer realm="latchkey"'
        desc = "The session has ended" if self.code == "revoked" else "The access token is invalid"
        return f'Bearer error="invalid_token", error_description="{desc}"'


def _invalid(reason: str, message: str = "the access token is invalid") -> VerifyError:
    return VerifyError("invalid_token", reason, message)


def step_up_challenge(max_age: Optional[int] = None) -> str:
    """The RFC 9470 §3 challenge for a route that needs a second factor within ``max_age`` s."""
    v = 'Bearer error="insufficient_user_authentication", error_description="A second factor is required"'
    if max_age is not None:
        v += f', max_age="{int(max_age)}"'
    return v


def require_step_up(claims: Claims, max_age: int) -> Claims:
    """RFC 9470 step-up as latchkey's own step-up routes check it: ``otp`` in ``amr``
    (RFC 8176) and ``auth_time`` no older than ``max_age`` seconds.

    Raises ``VerifyError`` ``insufficient_user_authentication``.
    """
    amr = claims.get("amr")
    otp = isinstance(amr, list) and "otp" in amr
    auth_time = claims.get("auth_time")
    recent = isinstance(auth_time, (int, float)) and _now() - auth_time <= max_age
    if not (otp and recent):
        raise VerifyError(
            "insufficient_user_authentication",
            "auth_time_too_old" if otp else "no_second_factor",
            "the access token's authentication is insufficient",
            max_age=max_age,
        )
    return claims


def _now() -> int:
    return int(time.time())


_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def _b64url_json(part: str) -> Dict[str, Any]:
    if not _B64URL.match(part):
        raise _invalid("malformed", "the access token is malformed")
    try:
        v = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, binascii.Error) as e:
        raise _invalid("malformed", "the access token is malformed") from e
    if not isinstance(v, dict):
        raise _invalid("malformed", "the access token is malformed")
    return v


def check_header(token: str) -> Dict[str, Any]:
    """The header checks that need no key; returns the header."""
    parts = token.split(".")
    if len(parts) != 3:
        raise _invalid("malformed", "the access token is malformed")
    header = _b64url_json(parts[0])
    # RFC 9068 §4: typ at+jwt (media types compare case-insensitively).
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ("at+jwt", "application/at+jwt"):
        raise _invalid("wrong_type", "the access token has the wrong type")
    if any(h in header for h in FORBIDDEN_HEADERS):
        raise _invalid("forbidden_header", "the access token's header is not allowed")
    # Exact, case-sensitive names: `none` in any spelling, HS256 and the rest are refused.
    if header.get("alg") not in ALGORITHMS:
        raise _invalid("invalid")
    if not isinstance(header.get("kid"), str):
        raise _invalid("unknown_key", "the access token's signing key is unknown")
    return header


def max_age_of(cache_control: Optional[str]) -> Optional[int]:
    """``max-age=N`` (seconds) from a Cache-Control value."""
    m = re.search(r'(?:^|,)\s*max-age="?(\d+)"?', cache_control or "", re.I)
    return int(m.group(1)) if m else None


@dataclass
class _Key:
    alg: str
    key: Any


class KeyCache:
    """The issuer's keys (RFC 7517), refetched on ``max-age`` and on an unknown kid."""

    def __init__(self, http: httpx.Client, uri: str, min_refetch: float):
        self._http = http
        self._uri = uri
        self._min_refetch = min_refetch
        self._keys: Dict[str, _Key] = {}
        self._lock = threading.Lock()
        self.max_age = 300.0
        self.last_fetch = 0.0
        self.fetches = 0

    def load(self) -> None:
        self.last_fetch = time.monotonic()
        self.fetches += 1
        res = self._http.get(self._uri, headers={"accept": "application/json"})
        res.raise_for_status()
        age = max_age_of(res.headers.get("cache-control"))
        keys: Dict[str, _Key] = {}
        for jwk in res.json().get("keys", []):
            if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
                continue
            if jwk.get("use", "sig") != "sig":
                continue
            # The key's own `alg` fixes the algorithm (RFC 8725 §3.1); keys without one
            # are not used.
            if jwk.get("alg") not in ALGORITHMS:
                continue
            try:
                keys[jwk["kid"]] = _Key(jwk["alg"], jwt.PyJWK(jwk, algorithm=jwk["alg"]).key)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
        self._keys = keys
        if age is not None:
            self.max_age = float(age)

    def reload(self) -> None:
        """Keeps the keys already held when a fetch fails."""
        try:
            self.load()
        except (httpx.HTTPError, ValueError):
            pass

    def get(self, kid: str) -> Optional[_Key]:
        return self._keys.get(kid)

    def key(self, kid: str) -> Optional[_Key]:
        """The key named ``kid``, refetching the set once if it is unknown and the last
        fetch is older than the minimum interval (one fetch at a time)."""
        k = self._keys.get(kid)
        if k is not None:
            return k
        with self._lock:
            k = self._keys.get(kid)
            if k is not None:
                return k
            if time.monotonic() - self.last_fetch < self._min_refetch:
                return None
            self.reload()
            return self._keys.get(kid)


class RevokedSet:
    """The revoked sessions, each kept until no token of it can still be accepted: its
    revocation time (or, from the document, the time it was learned) plus the feed's
    horizon plus this verifier's leeway. Pruned on a timer, whatever the feed does."""

    def __init__(self, leeway: int, now: Callable[[], float] = time.time):
        self.leeway = leeway
        self.horizon = 0
        self._now = now
        self._entries: Dict[str, float] = {}
        self._next_due = math.inf
        self._lock = threading.Lock()

    def insert(self, sid: str, revoked_at: float) -> None:
        with self._lock:
            until = revoked_at + self.horizon + self.leeway
            self._entries[sid] = max(self._entries.get(sid, until), until)
            self._next_due = min(self._next_due, until)

    def __contains__(self, sid: object) -> bool:
        return sid in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def prune(self) -> None:
        """Drops sessions whose tokens can no longer be accepted (only when one is due)."""
        now = self._now()
        with self._lock:
            if now < self._next_due:
                return
            self._entries = {s: u for s, u in self._entries.items() if u > now}
            self._next_due = min(self._entries.values(), default=math.inf)


class Feed:
    """Following the revocation feed (docs/contract.md "Revocation feed")."""

    def __init__(self, http: httpx.Client, endpoint: str, credentials: Tuple[str, str], revoked: RevokedSet):
        self._http = http
        self._endpoint = endpoint
        self._auth = httpx.BasicAuth(*credentials)
        self.revoked = revoked
        self.heard = -math.inf
        self.etag: Optional[str] = None
        self.last_event_id: Optional[int] = None
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []

    def poll_once(self) -> None:
        """One ``GET /revocations`` (conditional after the first); merges what it lists."""
        headers = {"accept": "application/json"}
        if self.etag:
            headers["if-none-match"] = self.etag
        res = self._http.get(self._endpoint, headers=headers, auth=self._auth)
        if res.status_code == 304:
            self.heard = time.monotonic()
            return
        res.raise_for_status()
        doc = res.json()
        if not isinstance(doc.get("horizon"), int) or not isinstance(doc.get("sessions"), list):
            raise ValueError("the feed document has no horizon or sessions")
        self.revoked.horizon = doc["horizon"]
        self.etag = res.headers.get("etag")
        # When each was revoked is not listed: count from now, which keeps it longer.
        now = time.time()
        for sid in doc["sessions"]:
            if isinstance(sid, str):
                self.revoked.insert(sid, now)
        self.revoked.prune()
        self.heard = time.monotonic()

    def _try_poll(self) -> None:
        try:
            self.poll_once()
        except (httpx.HTTPError, ValueError):
            pass

    def start(self, mode: FeedMode, poll_interval: float) -> None:
        def pruner() -> None:
            while not self._stop.wait(1.0):
                self.revoked.prune()

        def poller() -> None:
            while not self._stop.wait(poll_interval):
                self._try_poll()

        targets = [pruner] + ([poller] if mode == "poll" else [self._stream_loop] if mode == "stream" else [])
        for t in targets:
            th = threading.Thread(target=t, name=f"latchkey-verify-{t.__name__}", daemon=True)
            th.start()
            self._threads.append(th)

    def _stream_loop(self) -> None:
        backoff = MIN_BACKOFF
        while not self._stop.is_set():
            if self._follow_stream():
                backoff = MIN_BACKOFF
            if self._stop.is_set():
                return
            # Lost (server restart, network): catch up by polling once, then reopen with
            # Last-Event-ID.
            self._try_poll()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _follow_stream(self) -> bool:
        """Reads the stream until it ends; True if it was open at some point."""
        headers = {"accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["last-event-id"] = str(self.last_event_id)
        opened = False
        try:
            with self._http.stream(
                "GET",
                self._endpoint.rstrip("/") + "/stream",
                headers=headers,
                auth=self._auth,
                timeout=httpx.Timeout(10.0, read=SILENCE),
            ) as res:
                if res.status_code != 200:
                    return False
                opened = True
                self.heard = time.monotonic()
                block: List[str] = []
                size = 0
                for line in res.iter_lines():
                    if self._stop.is_set():
                        return True
                    self.heard = time.monotonic()
                    if line == "":
                        self._event(block)
                        block, size = [], 0
                    else:
                        block.append(line)
                        size += len(line)
                        if size > 1 << 20:
                            # No event is this long: not latchkey, or broken. Reconnect.
                            return True
        except (httpx.HTTPError, OSError):
            pass
        return opened

    def _event(self, lines: Sequence[str]) -> None:
        event_id: Optional[int] = None
        data: Any = None
        for line in lines:
            if line.startswith("id:"):
                try:
                    event_id = int(line[3:].strip())
                except ValueError:
                    pass
            elif line.startswith("data:"):
                try:
                    data = json.loads(line[5:].strip())
                except ValueError:
                    data = None
        if isinstance(data, dict) and isinstance(data.get("sid"), str):
            at = data.get("revoked_at")
            self.revoked.insert(data["sid"], at if isinstance(at, (int, float)) else time.time())
        if event_id is not None:
            self.last_event_id = event_id

    def close(self) -> None:
        self._stop.set()


class Verifier:
    """Verifies access tokens; one instance per process, shared by every request
    (thread-safe; ``averify`` for asyncio)."""

    def __init__(
        self,
        *,
        issuer: str,
        audiences: Sequence[str],
        leeway: int,
        max_staleness: float,
        on_stale: str,
        keys: KeyCache,
        revoked: RevokedSet,
        feed: Optional[Feed],
        http: httpx.Client,
    ):
        self.issuer = issuer
        self.audiences = list(audiences)
        self.leeway = leeway
        self.max_staleness = max_staleness
        self.on_stale = on_stale
        self._keys = keys
        self._revoked = revoked
        self._feed = feed
        self._http = http

    def verify(self, token: str) -> Claims:
        """Verifies ``token`` (the Bearer value): size cap, ``typ`` at+jwt, no ``jwk``/
        ``jku``/``x5u``/``x5c``/``crit``, a known ``kid`` whose key fixes the algorithm,
        the signature, exact ``iss``, an accepted ``aud``, ``exp``/``nbf``/``iat`` with
        leeway, then the session against the revocation feed.

        Returns the claims or raises ``VerifyError``. May refetch the JWKS once (rate
        limited) for an unknown ``kid``."""
        header = self._precheck(token)
        return self._check(token, header, self._keys.key(header["kid"]))

    async def averify(self, token: str) -> Claims:
        """``verify`` for asyncio: never blocks the loop (an unknown kid's refetch runs in
        a worker thread)."""
        header = self._precheck(token)
        key = self._keys.get(header["kid"])
        if key is None:
            key = await asyncio.to_thread(self._keys.key, header["kid"])
        return self._check(token, header, key)

    def verify_step_up(self, token: str, max_age: int) -> Claims:
        """``verify``, then RFC 9470 step-up (``otp`` in ``amr``, ``auth_time`` within ``max_age`` s)."""
        return require_step_up(self.verify(token), max_age)

    def authenticate(self, authorization: Optional[str], step_up_max_age: Optional[int] = None) -> Claims:
        """The framework-free call: the ``Authorization`` header's value in, the claims out
        (or ``VerifyError``; see ``refusal`` for the answer to send)."""
        token = bearer(authorization)
        if token is None:
            raise VerifyError("invalid_token", "missing", "a Bearer access token is required")
        claims = self.verify(token)
        return require_step_up(claims, step_up_max_age) if step_up_max_age is not None else claims

    async def aauthenticate(self, authorization: Optional[str], step_up_max_age: Optional[int] = None) -> Claims:
        """``authenticate`` for asyncio."""
        token = bearer(authorization)
        if token is None:
            raise VerifyError("invalid_token", "missing", "a Bearer access token is required")
        claims = await self.averify(token)
        return require_step_up(claims, step_up_max_age) if step_up_max_age is not None else claims

    def _precheck(self, token: str) -> Dict[str, Any]:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
            raise _invalid("too_large", "the access token is too large")
        return check_header(token)

    def _check(self, token: str, header: Mapping[str, Any], key: Optional[_Key]) -> Claims:
        if key is None:
            raise _invalid("unknown_key", "the access token's signing key is unknown")
        # RFC 8725 §3.1: the key fixes the algorithm; the header must name the same.
        if header["alg"] != key.alg:
            raise _invalid("invalid")
        try:
            payload = PyJWS().decode_complete(token, key.key, algorithms=[key.alg])["payload"]
            c = json.loads(payload)
        except (jwt.PyJWTError, ValueError) as e:
            raise _invalid("invalid") from e
        if not isinstance(c, dict):
            raise _invalid("invalid")

        def is_str(v: Any) -> bool:
            return isinstance(v, str)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        aud = c.get("aud")
        aud_ok = is_str(aud) or (isinstance(aud, list) and all(is_str(a) for a in aud))
        if not (
            is_str(c.get("iss"))
            and is_str(c.get("sub"))
            and aud_ok
            and is_str(c.get("client_id"))
            and is_num(c.get("iat"))
            and is_num(c.get("exp"))
            and is_str(c.get("jti"))
            and is_str(c.get("sid"))
            and ("nbf" not in c or is_num(c["nbf"]))
        ):
            raise _invalid("invalid")
        now = _now()
        if c["exp"] + self.leeway <= now:
            raise _invalid("expired", "the access token has expired")
        if c["iat"] - self.leeway > now or ("nbf" in c and c["nbf"] - self.leeway > now):
            raise _invalid("not_yet_valid", "the access token is not yet valid")
        auds = aud if isinstance(aud, list) else [aud]
        if c["iss"] != self.issuer or not any(a in auds for a in self.audiences):
            raise _invalid("invalid")
        if self.on_stale == "refuse" and self.feed_staleness() > self.max_staleness:
            raise VerifyError("feed_stale", "feed_stale", "the revocation feed is stale")
        if c["sid"] in self._revoked:
            raise VerifyError("revoked", "revoked", "the access token's session has been revoked")
        return c

    def feed_staleness(self) -> float:
        """Seconds since the feed was last heard from (0 without a feed)."""
        return time.monotonic() - self._feed.heard if self._feed else 0.0

    def is_revoked(self, sid: str) -> bool:
        """Whether ``sid`` is known to be revoked (the lookup ``verify`` does)."""
        return sid in self._revoked

    @property
    def revoked_sessions(self) -> int:
        """How many revoked sessions the verifier holds."""
        return len(self._revoked)

    @property
    def jwks_fetches(self) -> int:
        """JWKS fetches made so far (for monitoring)."""
        return self._keys.fetches

    def close(self) -> None:
        """Stops following the feed."""
        if self._feed:
            self._feed.close()

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*)\s*$", re.I)


def bearer(authorization: Optional[str]) -> Optional[str]:
    """The token of an ``Authorization: Bearer …`` value (RFC 6750 §2.1), or None."""
    m = _BEARER.match(authorization or "")
    return m.group(1) if m else None


def refusal(err: VerifyError) -> Tuple[int, Dict[str, str], Dict[str, str]]:
    """(status, headers, JSON body) to answer a refused request with."""
    code = {"revoked": "invalid_token", "feed_stale": "temporarily_unavailable"}.get(err.code, err.code)
    headers = {"WWW-Authenticate": err.www_authenticate}
    if err.code == "feed_stale":
        headers["Retry-After"] = "1"
    return err.status, headers, {"error": code, "error_description": str(err)}


def create_verifier(
    issuer: str,
    audience: Union[str, Sequence[str]],
    *,
    resource_server: Optional[Tuple[str, str]] = None,
    feed: FeedMode = "stream",
    poll_interval: float = 5.0,
    max_staleness: float = 60.0,
    on_stale: Literal["refuse", "accept"] = "refuse",
    leeway: int = 30,
    min_refetch_interval: float = 10.0,
    metadata_url: Optional[str] = None,
    http: Optional[httpx.Client] = None,
) -> Verifier:
    """Discovers the issuer's RFC 8414 metadata, fetches its JWKS and the revocation feed,
    then follows both in background threads. Durations are in seconds."""
    audiences = [audience] if isinstance(audience, str) else list(audience)
    if not audiences:
        raise ValueError("at least one audience is required")
    if feed not in ("stream", "poll", "off"):
        raise ValueError('feed is "stream", "poll" or "off"')
    if on_stale not in ("refuse", "accept"):
        raise ValueError('on_stale is "refuse" or "accept"')
    client = http or httpx.Client(timeout=10.0)
    meta_url = metadata_url or issuer.rstrip("/") + "/.well-known/oauth-authorization-server"
    res = client.get(meta_url, headers={"accept": "application/json"})
    res.raise_for_status()
    meta = res.json()
    # RFC 8414 §3.3: the metadata's issuer is the configured one, exactly.
    if meta.get("issuer") != issuer:
        raise ValueError(f"discovery failed: the metadata's issuer {meta.get('issuer')!r} is not {issuer!r}")
    if not isinstance(meta.get("jwks_uri"), str):
        raise ValueError("discovery failed: no jwks_uri")
    keys = KeyCache(client, meta["jwks_uri"], min_refetch_interval)
    keys.load()
    revoked = RevokedSet(leeway)
    follower: Optional[Feed] = None
    if resource_server is not None and feed != "off":
        endpoint = meta.get("latchkey_revocations_endpoint")
        if not isinstance(endpoint, str):
            raise ValueError("discovery failed: no latchkey_revocations_endpoint")
        follower = Feed(client, endpoint, tuple(resource_server), revoked)  # type: ignore[arg-type]
        follower.poll_once()
        follower.start(feed, poll_interval)
    verifier = Verifier(
        issuer=issuer,
        audiences=audiences,
        leeway=leeway,
        max_staleness=max_staleness,
        on_stale=on_stale,
        keys=keys,
        revoked=revoked,
        feed=follower,
        http=client,
    )
    _start_key_refresher(keys, follower)
    return verifier


def _start_key_refresher(keys: KeyCache, feed: Optional[Feed]) -> None:
    """Refetches the JWKS when its ``max-age`` has passed (at least hourly, at most every
    10 s), so rotated keys are seen without an unknown kid."""
    stop = feed._stop if feed else threading.Event()

    def run() -> None:
        while not stop.wait(min(max(keys.max_age, 10.0), 3600.0)):
            with keys._lock:
                keys.reload()

    threading.Thread(target=run, name="latchkey-verify-jwks", daemon=True).start()


async def create_verifier_async(issuer: str, audience: Union[str, Sequence[str]], **options: Any) -> Verifier:
    """``create_verifier`` for asyncio (the start-up requests run in a worker thread)."""
    return await asyncio.to_thread(create_verifier, issuer, audience, **options)
