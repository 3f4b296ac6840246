"""Unit tests of latchkey-verify against an in-process fake issuer (metadata, JWKS,
revocation document and stream as latchkey's docs/contract.md "Revocation feed"
describes them), where the tests control every byte: resume with Last-Event-ID, ETag
polling, staleness, the JWKS flood, pruning, asyncio and the FastAPI dependency. The
real latchkey is tests/api/verifiers.rs's job."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import tracemalloc
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from latchkey_verify import (
    RevokedSet,
    Verifier,
    VerifyError,
    create_verifier,
    create_verifier_async,
    refusal,
    require_step_up,
    step_up_challenge,
)


class FakeIssuer:
    def __init__(self, horizon: int = 930):
        self.key = ec.generate_private_key(ec.SECP256R1())
        pub = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        self.jwk = {**pub, "kid": "k1", "alg": "ES256", "use": "sig"}
        self.horizon = horizon
        self.jwks_fetches = 0
        self.polls: List[Optional[str]] = []
        self.last_event_ids: List[Optional[str]] = []
        self.sessions: List[str] = []
        self.events: List[tuple] = []
        self.streams: List[Any] = []
        self.heartbeats = True
        self.lock = threading.Lock()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def send_json(self, body: Any, headers: Dict[str, str] = {}) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                for k, v in {"content-type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                base = issuer.base
                if self.path == "/.well-known/oauth-authorization-server":
                    self.send_json(
                        {"issuer": base, "jwks_uri": base + "/jwks", "latchkey_revocations_endpoint": base + "/revocations"}
                    )
                elif self.path == "/jwks":
                    issuer.jwks_fetches += 1
                    self.send_json({"keys": [issuer.jwk]}, {"cache-control": "max-age=300"})
                elif self.path == "/revocations":
                    etag = f'W/"{len(issuer.sessions)}"'
                    inm = self.headers.get("if-none-match")
                    issuer.polls.append(inm)
                    if inm == etag:
                        self.send_response(304)
                        self.send_header("content-length", "0")
                        self.end_headers()
                        return
                    self.send_json(
                        {"issuer": base, "generated_at": 0, "horizon": issuer.horizon, "sessions": list(issuer.sessions)},
                        {"etag": etag},
                    )
                elif self.path == "/revocations/stream":
                    last = self.headers.get("last-event-id")
                    issuer.last_event_ids.append(last)
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.end_headers()
                    try:
                        self.wfile.write(b"retry: 1000\n\n")
                        for eid, text in list(issuer.events):
                            if last is None or eid > int(last):
                                self.wfile.write(text)
                        self.wfile.flush()
                        with issuer.lock:
                            issuer.streams.append(self)
                        while self in issuer.streams:
                            if issuer.heartbeats:
                                self.wfile.write(b": heartbeat\n\n")
                                self.wfile.flush()
                            time.sleep(0.05)
                    except OSError:
                        pass
                    finally:
                        with issuer.lock:
                            if self in issuer.streams:
                                issuer.streams.remove(self)
                        self.close_connection = True
                else:
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def revoke(self, sid: str, at: Optional[int] = None) -> None:
        self.sessions.append(sid)
        eid = len(self.events) + 1
        data = json.dumps({"sid": sid, "revoked_at": at or int(time.time())})
        text = f"id: {eid}\nevent: revoked\ndata: {data}\n\n".encode()
        self.events.append((eid, text))
        with self.lock:
            for s in list(self.streams):
                try:
                    s.wfile.write(text)
                    s.wfile.flush()
                except OSError:
                    pass

    def drop_streams(self) -> None:
        with self.lock:
            for s in self.streams:
                try:
                    s.connection.shutdown(2)
                except OSError:
                    pass
            self.streams.clear()

    def mint(self, header: Optional[Dict[str, Any]] = None, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.base, "sub": str(uuid.uuid4()), "aud": "api", "client_id": "default", "iat": now,
            "exp": now + 900, "jti": str(uuid.uuid4()), "sid": str(uuid.uuid4()), "auth_time": now, "amr": ["pwd"],
            **claims,
        }
        return jwt.encode(body, self.key, algorithm="ES256", headers={"typ": "at+jwt", "kid": "k1", **(header or {})})

    def close(self) -> None:
        self.drop_streams()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def lk() -> Iterator[FakeIssuer]:
    issuer = FakeIssuer()
    yield issuer
    issuer.close()


@pytest.fixture
def make(lk: FakeIssuer) -> Iterator[Callable[..., Verifier]]:
    made: List[Verifier] = []

    def build(**options: Any) -> Verifier:
        v = create_verifier(lk.base, "api", resource_server=("rs", "s"), **options)
        made.append(v)
        return v

    yield build
    for v in made:
        v.close()


def code_of(f: Callable[[], Any]) -> str:
    try:
        f()
        return "valid"
    except VerifyError as e:
        return e.code


def until(f: Callable[[], bool], within: float, what: str) -> float:
    started = time.monotonic()
    while not f():
        assert time.monotonic() - started < within, f"{what} not within {within} s"
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_revocation_arrives_through_the_stream_and_a_reconnect_resumes(lk: FakeIssuer, make: Callable[..., Verifier]) -> None:
    v = make()
    sid = str(uuid.uuid4())
    token = lk.mint(sid=sid)
    assert v.verify(token)["sid"] == sid
    until(lambda: len(lk.streams) == 1, 2, "the stream")
    lk.revoke(sid)
    until(lambda: code_of(lambda: v.verify(token)) == "revoked", 1, "revoked")
    lk.drop_streams()
    lk.revoke(str(uuid.uuid4()))
    until(lambda: len(lk.last_event_ids) >= 2 and len(lk.streams) == 1, 3, "a reconnect")
    assert lk.last_event_ids[-1] == "1"
    assert v.revoked_sessions == 2


def test_polling_sends_if_none_match(lk: FakeIssuer, make: Callable[..., Verifier]) -> None:
    v = make(feed="poll", poll_interval=0.05)
    sid = str(uuid.uuid4())
    token = lk.mint(sid=sid)
    until(lambda: len(lk.polls) >= 3, 2, "polls")
    assert lk.polls[-1] == 'W/"0"'
    assert code_of(lambda: v.verify(token)) == "valid"
    lk.revoke(sid)
    until(lambda: code_of(lambda: v.verify(token)) == "revoked", 2, "revoked by polling")
    assert not lk.streams


def test_a_silent_feed_is_stale_after_max_staleness_and_recovers(lk: FakeIssuer, make: Callable[..., Verifier]) -> None:
    v = make(max_staleness=0.3)
    token = lk.mint()
    until(lambda: len(lk.streams) == 1, 2, "the stream")
    assert code_of(lambda: v.verify(token)) == "valid"
    lk.heartbeats = False
    took = until(lambda: code_of(lambda: v.verify(token)) == "feed_stale", 2, "feed_stale")
    assert took >= 0.15
    lk.heartbeats = True
    until(lambda: code_of(lambda: v.verify(token)) == "valid", 1, "recovery")
    lenient = make(max_staleness=0, on_stale="accept")
    assert code_of(lambda: lenient.verify(token)) == "valid"


def test_1000_unknown_kids_cost_at_most_one_jwks_fetch(lk: FakeIssuer, make: Callable[..., Verifier]) -> None:
    # Past one refetch interval since the start, so the flood may cost one fetch (and
    # one more per further interval it lasts).
    v = make(feed="off", min_refetch_interval=0.2)
    time.sleep(0.25)
    before = lk.jwks_fetches
    started = time.monotonic()

    def b64(x: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(x).encode()).rstrip(b"=").decode()

    tokens = [f"{b64({'typ': 'at+jwt', 'alg': 'ES256', 'kid': str(uuid.uuid4())})}.{b64({})}.c2ln" for _ in range(1000)]
    threads = [threading.Thread(target=lambda ts=tokens[i::8]: [code_of(lambda t=t: v.verify(t)) for t in ts]) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(code_of(lambda t=t: v.verify(t)) == "invalid_token" for t in tokens[:10])
    fetches = lk.jwks_fetches - before
    elapsed = time.monotonic() - started
    print(f"1,000 unknown kids: {fetches} JWKS fetch(es) in {elapsed:.2f} s")
    assert 1 <= fetches <= 1 + int(elapsed / 0.2)


def test_the_revoked_set_stays_bounded_over_10000_revocations_rolling_past_the_horizon() -> None:
    now = [1_000_000.0]
    s = RevokedSet(30, now=lambda: now[0])
    s.horizon = 60
    largest = 0
    tracemalloc.start()
    for i in range(10_000):
        now[0] += 1
        s.insert(str(uuid.uuid4()), now[0])
        s.prune()
        largest = max(largest, len(s))
        if i == 999:
            at_1000 = tracemalloc.get_traced_memory()[0]
    at_10000 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"10,000 revocations: at most {largest} held; traced memory {at_1000 // 1024} KiB at 1,000, {at_10000 // 1024} KiB at 10,000")
    assert largest <= 91
    assert at_10000 < at_1000 + 64 * 1024, "memory flat"


def test_10000_revocations_through_the_stream_leave_the_set_once_past_the_horizon() -> None:
    lk = FakeIssuer(horizon=1)
    v = create_verifier(lk.base, "api", resource_server=("rs", "s"), leeway=0)
    try:
        until(lambda: len(lk.streams) == 1, 2, "the stream")
        peak = 0
        for _ in range(10):
            for _ in range(1000):
                lk.revoke(str(uuid.uuid4()))
            time.sleep(0.5)
            peak = max(peak, v.revoked_sessions)
        drained = until(lambda: v.revoked_sessions == 0, 4, "every entry pruned")
        print(f"10,000 streamed revocations (horizon 1 s): at most {peak} held, none {drained:.1f} s after the last")
        # An entry lives at most 2 s (1 s horizon, whole seconds) plus a 1 s pruning tick.
        assert peak <= 5_000
    finally:
        v.close()
        lk.close()


def test_step_up(lk: FakeIssuer, make: Callable[..., Verifier]) -> None:
    v = make(feed="off")
    with pytest.raises(VerifyError) as e:
        require_step_up(v.verify(lk.mint()), 900)
    assert e.value.code == "insufficient_user_authentication"
    assert 'max_age="900"' in e.value.www_authenticate
    assert v.verify_step_up(lk.mint(amr=["pwd", "otp"]), 900)["amr"] == ["pwd", "otp"]
    with pytest.raises(VerifyError) as e:
        v.verify_step_up(lk.mint(amr=["pwd", "otp"], auth_time=int(time.time()) - 1000), 900)
    assert e.value.reason == "auth_time_too_old"
    assert step_up_challenge(60) == (
        'Bearer error="insufficient_user_authentication", error_description="A second factor is required", max_age="60"'
    )


def test_the_framework_free_call(lk: FakeIssuer, make: Callable[..., Verifier]) -> None:
    v = make(feed="off")
    assert v.authenticate("Bearer " + lk.mint(sub="alice"))["sub"] == "alice"
    with pytest.raises(VerifyError) as e:
        v.authenticate(None)
    status, headers, body = refusal(e.value)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(VerifyError) as e:
        v.authenticate("Bearer a.b.c")
    assert refusal(e.value)[2]["error"] == "invalid_token"


def test_asyncio(lk: FakeIssuer) -> None:
    async def main() -> None:
        v = await create_verifier_async(lk.base, "api", resource_server=("rs", "s"))
        try:
            claims = await v.averify(lk.mint(sub="carol"))
            assert claims["sub"] == "carol"
            verdicts = await asyncio.gather(*(v.averify(lk.mint(header={"kid": str(i)})) for i in range(50)), return_exceptions=True)
            assert all(isinstance(x, VerifyError) and x.code == "invalid_token" for x in verdicts)
            assert (await v.aauthenticate("Bearer " + lk.mint(amr=["pwd", "otp"]), 900))["amr"] == ["pwd", "otp"]
        finally:
            v.close()

    asyncio.run(main())


def test_the_fastapi_dependency(lk: FakeIssuer, make: Callable[..., Verifier]) -> None:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from latchkey_verify.fastapi import Authenticated

    v = make()
    app = FastAPI()

    @app.get("/me")
    async def me(claims: dict = Depends(Authenticated(v))) -> dict:
        return {"sub": claims["sub"]}

    @app.get("/admin")
    async def admin(claims: dict = Depends(Authenticated(v, step_up_max_age=900))) -> dict:
        return {"ok": True}

    client = TestClient(app)
    sid = str(uuid.uuid4())
    token = lk.mint(sub="dave", sid=sid)
    res = client.get("/me", headers={"authorization": f"Bearer {token}"})
    assert res.status_code == 200 and res.json() == {"sub": "dave"}
    res = client.get("/me")
    assert res.status_code == 401 and res.headers["www-authenticate"].startswith("Bearer")
    res = client.get("/admin", headers={"authorization": f"Bearer {token}"})
    assert res.status_code == 401
    assert 'error="insufficient_user_authentication"' in res.headers["www-authenticate"]
    until(lambda: len(lk.streams) == 1, 2, "the stream")
    lk.revoke(sid)
    until(lambda: client.get("/me", headers={"authorization": f"Bearer {token}"}).status_code == 401, 1, "revoked")


def test_discovery_refuses_another_issuer(lk: FakeIssuer) -> None:
    with pytest.raises(ValueError, match="issuer"):
        create_verifier(lk.base + "/", "api", metadata_url=lk.base + "/.well-known/oauth-authorization-server")
    with pytest.raises(ValueError, match="audience"):
        create_verifier(lk.base, [])
