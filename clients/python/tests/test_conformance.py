"""The shared conformance set (clients/conformance/README.md), run by the Python verifier.

tests/api/verifiers.rs starts latchkey, writes the steps into LATCHKEY_CONFORMANCE_DIR
and runs this file with the built wheel installed on PYTHONPATH (not the source tree).
Without that variable it is skipped: the set only exists against a live latchkey.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

import latchkey_verify
from latchkey_verify import VerifyError, create_verifier, require_step_up

DIR = os.environ.get("LATCHKEY_CONFORMANCE_DIR")
ME = os.environ.get("LATCHKEY_VERIFIER", "python")


def wait_for_json(path: Path, within: float) -> Dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.01)
    raise AssertionError(f"{path} did not appear within {within} s")


def write_json(name: str, value: Any) -> None:
    assert DIR
    tmp = Path(DIR) / f".{name}.tmp"
    tmp.write_text(json.dumps(value))
    tmp.rename(Path(DIR) / name)


def b64(v: Any) -> str:
    raw = v.encode() if isinstance(v, str) else json.dumps(v).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def verdict_of(verifier: latchkey_verify.Verifier, token: str, step_up: Optional[Dict[str, Any]] = None) -> str:
    try:
        claims = verifier.verify(token)
        if step_up:
            require_step_up(claims, step_up["max_age"])
        return "valid"
    except VerifyError as e:
        return e.code


def run_case(verifier: latchkey_verify.Verifier, c: Dict[str, Any]) -> Dict[str, Any]:
    started = time.monotonic()
    if c.get("random_kids"):
        got = "invalid_token"
        for i in range(c["random_kids"]):
            t = f"{b64({'typ': 'at+jwt', 'alg': 'ES256', 'kid': f'random-{i}-{uuid.uuid4()}'})}.{b64({'sub': 'x'})}.{b64('sig')}"
            v = verdict_of(verifier, t)
            if v != "invalid_token":
                got = v
                break
        ms = int((time.monotonic() - started) * 1000)
        return {"name": c["name"], "verdict": got, "ms": ms, "jwks_fetches": verifier.jwks_fetches}
    while True:
        got = verdict_of(verifier, c["token"], c.get("step_up"))
        elapsed = time.monotonic() - started
        if got == c["expect"] or elapsed * 1000 >= c.get("within_ms", 0):
            if "since_ms" in c:
                ms = int(time.time() * 1000) - c["since_ms"]
            else:
                ms = int(elapsed * 1000)
            return {"name": c["name"], "verdict": got, "ms": ms, "at_ms": int(time.time() * 1000)}
        time.sleep(0.01)


@pytest.mark.skipif(not DIR, reason="LATCHKEY_CONFORMANCE_DIR is not set")
def test_the_conformance_set_against_a_live_latchkey() -> None:
    assert DIR
    installed_in = os.environ.get("LATCHKEY_VERIFY_INSTALLED_IN")
    print(f"latchkey_verify from {latchkey_verify.__file__}")
    if installed_in:
        assert latchkey_verify.__file__.startswith(installed_in), "the installed package, not the source tree"
    config = wait_for_json(Path(DIR) / "config.json", 5)
    verifier = create_verifier(
        config["issuer"],
        config["audience"],
        resource_server=(config["resource_server"]["id"], config["resource_server"]["secret"]),
        feed="stream",
        leeway=config["leeway_s"],
        max_staleness=config["max_staleness_ms"] / 1000,
        min_refetch_interval=config["min_refetch_interval_ms"] / 1000,
    )
    failures = []
    with verifier:
        i = 0
        while True:
            step = wait_for_json(Path(DIR) / f"step-{i}.json", 120)
            results = []
            if step["only"] is None or step["only"] == ME:
                for c in step["cases"]:
                    r = run_case(verifier, c)
                    results.append(r)
                    if r["verdict"] != c["expect"]:
                        failures.append(f"{step['name']} / {c['name']}: {r['verdict']}, expected {c['expect']}")
                    if c.get("within_ms") or c.get("random_kids"):
                        print(f"{step['name']} / {c['name']}: {r['verdict']} after {r['ms']} ms")
            write_json(f"result-{ME}-{i}.json", {"verifier": ME, "step": i, "results": results})
            if step.get("last"):
                break
            i += 1
    assert failures == []
