"""Login timing for an existing vs an unknown user (OWASP Authentication: response
time must not reveal whether an account exists).

usage: python3 bench/login_timing.py BASE_URL [TRIES]
Signs up a user, then sends TRIES failed logins for it (wrong password) and TRIES for
names that do not exist, interleaved, over one keep-alive connection, and prints the
median and 90th percentile of each. Run it against a release build with throttling
raised out of the way (scripts/bench-login-timing does all of that).
"""
import http.client
import json
import secrets
import statistics
import sys
import time
from urllib.parse import urlparse


def post(conn, path, body):
    payload = json.dumps(body)
    start = time.perf_counter()
    conn.request("POST", path, payload, {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status, time.perf_counter() - start


def main() -> int:
    base = urlparse(sys.argv[1])
    tries = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=30)
    name = "timing-" + secrets.token_hex(4)
    status, _ = post(conn, "/signup", {"username": name, "password": "a long enough passphrase 42"})
    assert status == 201, status
    known, unknown = [], []
    for i in range(tries):
        s1, t1 = post(conn, "/login", {"username": name, "password": f"wrong password {i}"})
        s2, t2 = post(conn, "/login", {"username": f"nobody-{secrets.token_hex(6)}", "password": f"wrong password {i}"})
        assert s1 == s2 == 401, (s1, s2)
        known.append(t1)
        unknown.append(t2)

    def describe(xs):
        xs = sorted(xs)
        return f"median {statistics.median(xs) * 1000:6.2f} ms, p90 {xs[int(len(xs) * 0.9)] * 1000:6.2f} ms"

    mk, mu = statistics.median(known), statistics.median(unknown)
    print(f"existing user, wrong password ({tries} tries): {describe(known)}")
    print(f"unknown user                  ({tries} tries): {describe(unknown)}")
    print(f"difference of medians: {(mk - mu) * 1000:+.2f} ms ({(mk - mu) / mu * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
