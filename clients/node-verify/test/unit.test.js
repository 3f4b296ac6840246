// Unit tests of @latchkey/verify against an in-process fake issuer (metadata, JWKS,
// revocation document and stream as docs/contract.md "Revocation feed" describes them),
// where the tests control every byte: resume with Last-Event-ID, ETag polling, staleness,
// the JWKS flood, pruning, and the Express and Fastify integrations with the real
// packages. The real latchkey is tests/api/verifiers.rs's job.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { randomUUID } from "node:crypto";
import express from "express";
import Fastify from "fastify";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import {
  createVerifier,
  expressMiddleware,
  fastifyPlugin,
  requireStepUp,
  RevokedSet,
  stepUpChallenge,
  VerifyError,
} from "@latchkey/verify";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function fakeIssuer({ horizon = 930 } = {}) {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
  const state = {
    jwksFetches: 0,
    polls: [],
    lastEventIds: [],
    sessions: [],
    events: [],
    streams: new Set(),
    heartbeats: true,
  };
  const server = http.createServer((req, res) => {
    const base = `http://127.0.0.1:${server.address().port}`;
    if (req.url === "/.well-known/oauth-authorization-server") {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ issuer: base, jwks_uri: `${base}/jwks`, latchkey_revocations_endpoint: `${base}/revocations` }));
    } else if (req.url === "/jwks") {
      state.jwksFetches += 1;
      res.setHeader("cache-control", "max-age=300");
      res.end(JSON.stringify({ keys: [jwk] }));
    } else if (req.url === "/revocations") {
      const etag = `W/"${state.sessions.length}"`;
      state.polls.push(req.headers["if-none-match"] ?? null);
      if (req.headers["if-none-match"] === etag) {
        res.statusCode = 304;
        res.end();
        return;
      }
      res.setHeader("etag", etag);
      res.end(JSON.stringify({ issuer: base, generated_at: 0, horizon, sessions: state.sessions }));
    } else if (req.url === "/revocations/stream") {
      const last = req.headers["last-event-id"];
      state.lastEventIds.push(last ?? null);
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("retry: 1000\n\n");
      for (const e of state.events) if (last === undefined || e.id > Number(last)) res.write(e.text);
      const beat = setInterval(() => state.heartbeats && res.write(": heartbeat\n\n"), 50);
      state.streams.add(res);
      res.on("close", () => {
        clearInterval(beat);
        state.streams.delete(res);
      });
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  return {
    issuer,
    state,
    revoke(sid, at = Math.floor(Date.now() / 1000)) {
      state.sessions.push(sid);
      const id = state.events.length + 1;
      const text = `id: ${id}\nevent: revoked\ndata: ${JSON.stringify({ sid, revoked_at: at })}\n\n`;
      state.events.push({ id, text });
      for (const s of state.streams) s.write(text);
    },
    dropStreams() {
      for (const s of state.streams) s.destroy();
    },
    mint(claims = {}, header = {}) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({
        iss: issuer, sub: randomUUID(), aud: "api", client_id: "default", iat: now, exp: now + 900,
        jti: randomUUID(), sid: randomUUID(), auth_time: now, amr: ["pwd"], ...claims,
      })
        .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid: "k1", ...header })
        .sign(privateKey);
    },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

const closers = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

async function setup(options = {}, issuerOptions = {}) {
  const lk = await fakeIssuer(issuerOptions);
  const verifier = await createVerifier({ issuer: lk.issuer, audience: "api", resourceServer: { id: "rs", secret: "s" }, ...options });
  closers.push(lk.close, () => verifier.close());
  return { lk, verifier };
}

async function codeOf(promise) {
  try {
    await promise;
    return "valid";
  } catch (e) {
    assert.ok(e instanceof VerifyError, String(e));
    return e.code;
  }
}

async function until(f, withinMs, what) {
  const started = Date.now();
  while (!(await f())) {
    if (Date.now() - started > withinMs) assert.fail(`${what} not within ${withinMs} ms`);
    await sleep(10);
  }
  return Date.now() - started;
}

test("a revocation arrives through the stream, and a reconnect resumes with Last-Event-ID", async () => {
  const { lk, verifier } = await setup();
  const sid = randomUUID();
  const token = await lk.mint({ sid });
  assert.equal((await verifier.verify(token)).sid, sid);
  await until(() => lk.state.streams.size === 1, 2000, "the stream");
  lk.revoke(sid);
  await until(async () => (await codeOf(verifier.verify(token))) === "revoked", 1000, "revoked");
  // The connection drops; the verifier polls once, then reopens after the last event.
  lk.dropStreams();
  lk.revoke(randomUUID());
  await until(() => lk.state.lastEventIds.length >= 2 && lk.state.streams.size === 1, 3000, "a reconnect");
  assert.equal(lk.state.lastEventIds.at(-1), "1");
  assert.equal(verifier.revokedSessions, 2);
});

test("polling sends If-None-Match and takes a 304 as news", async () => {
  const { lk, verifier } = await setup({ feed: "poll", pollInterval: 50 });
  const sid = randomUUID();
  const token = await lk.mint({ sid });
  await until(() => lk.state.polls.length >= 3, 2000, "polls");
  assert.match(lk.state.polls.at(-1), /^W\/"0"$/);
  assert.equal(await codeOf(verifier.verify(token)), "valid");
  lk.revoke(sid);
  await until(async () => (await codeOf(verifier.verify(token))) === "revoked", 2000, "revoked by polling");
  assert.equal(lk.state.streams.size, 0, "no stream in poll mode");
});

test("a silent feed makes tokens feed_stale after maxStaleness, and they verify once it speaks again", async () => {
  const { lk, verifier } = await setup({ maxStaleness: 300 });
  const token = await lk.mint();
  await until(() => lk.state.streams.size === 1, 2000, "the stream");
  assert.equal(await codeOf(verifier.verify(token)), "valid");
  lk.state.heartbeats = false;
  const stale = await until(async () => (await codeOf(verifier.verify(token))) === "feed_stale", 2000, "feed_stale");
  assert.ok(stale >= 150, `stale after ${stale} ms`);
  lk.state.heartbeats = true;
  await until(async () => (await codeOf(verifier.verify(token))) === "valid", 1000, "recovery");
  // onStale "accept" goes on without revocations.
  const lenient = await createVerifier({ issuer: lk.issuer, audience: "api", resourceServer: { id: "rs", secret: "s" }, maxStaleness: 0, onStale: "accept" });
  closers.push(() => lenient.close());
  assert.equal(await codeOf(lenient.verify(token)), "valid");
});

test("1,000 unknown kids cost one JWKS fetch per minRefetchInterval", async () => {
  // Past one refetch interval since the start, so the flood may cost one fetch (and one
  // more per further interval it lasts).
  const { lk, verifier } = await setup({ feed: "off", minRefetchInterval: 200 });
  await sleep(250);
  const before = lk.state.jwksFetches;
  const started = Date.now();
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const verdicts = await Promise.all(
    Array.from({ length: 1000 }, () => codeOf(verifier.verify(`${b64({ typ: "at+jwt", alg: "ES256", kid: randomUUID() })}.${b64({})}.c2ln`))),
  );
  assert.ok(verdicts.every((v) => v === "invalid_token"));
  const fetches = lk.state.jwksFetches - before;
  const elapsed = Date.now() - started;
  console.log(`1,000 unknown kids: ${fetches} JWKS fetch(es) in ${elapsed} ms`);
  assert.ok(fetches >= 1 && fetches <= 1 + Math.floor(elapsed / 200), `${fetches} fetches`);
});

test("the revoked set stays bounded over 10,000 revocations rolling past the horizon", () => {
  let now = 1_000_000;
  const set = new RevokedSet(30, () => now);
  set.horizon = 60;
  let largest = 0;
  const heapBefore = process.memoryUsage().heapUsed;
  for (let i = 0; i < 10_000; i++) {
    now += 1; // one revocation a second
    set.insert(randomUUID(), now);
    set.prune();
    largest = Math.max(largest, set.size);
  }
  // An entry lives horizon + leeway = 90 s: never more than 91 at a time.
  assert.ok(largest <= 91, `largest ${largest}`);
  assert.ok(set.size <= 91);
  const grew = process.memoryUsage().heapUsed - heapBefore;
  console.log(`10,000 revocations: at most ${largest} held, heap grew ${(grew / 1024).toFixed(0)} KiB`);
});

test("10,000 revocations through the stream leave the set once past the horizon", async () => {
  const { lk, verifier } = await setup({ leeway: 0 }, { horizon: 1 });
  await until(() => lk.state.streams.size === 1, 2000, "the stream");
  let peak = 0;
  for (let batch = 0; batch < 10; batch++) {
    for (let i = 0; i < 1000; i++) lk.revoke(randomUUID());
    await sleep(500);
    peak = Math.max(peak, verifier.revokedSessions);
  }
  const drained = await until(() => verifier.revokedSessions === 0, 4000, "every entry pruned");
  console.log(`10,000 streamed revocations (horizon 1 s): at most ${peak} held, none ${drained} ms after the last`);
  // An entry lives at most 2 s (1 s horizon, whole seconds) plus a 1 s pruning tick.
  assert.ok(peak <= 5_000, `peak ${peak}`);
});

test("step-up: requireStepUp and the RFC 9470 challenge", async () => {
  const { lk, verifier } = await setup({ feed: "off" });
  const pwd = await verifier.verify(await lk.mint());
  assert.throws(() => requireStepUp(pwd, { maxAge: 900 }), (e) => e.code === "insufficient_user_authentication" && e.wwwAuthenticate.includes('max_age="900"'));
  const otp = await verifier.verify(await lk.mint({ amr: ["pwd", "otp"] }));
  assert.equal(requireStepUp(otp, { maxAge: 900 }), otp);
  const old = await verifier.verify(await lk.mint({ amr: ["pwd", "otp"], auth_time: Math.floor(Date.now() / 1000) - 1000 }));
  assert.throws(() => requireStepUp(old, { maxAge: 900 }), (e) => e.reason === "auth_time_too_old");
  assert.equal(stepUpChallenge({ maxAge: 60 }), 'Bearer error="insufficient_user_authentication", error_description="A second factor is required", max_age="60"');
});

test("Express middleware: req.auth, 401 with WWW-Authenticate, step-up, revoked", async () => {
  const { lk, verifier } = await setup();
  const app = express();
  app.get("/me", expressMiddleware(verifier), (req, res) => res.json({ sub: req.auth.sub }));
  app.get("/admin", expressMiddleware(verifier, { stepUp: { maxAge: 900 } }), (req, res) => res.json({ ok: true }));
  const server = await new Promise((r) => { const s = app.listen(0, "127.0.0.1", () => r(s)); });
  closers.push(() => new Promise((r) => { server.closeAllConnections(); server.close(r); }));
  const url = `http://127.0.0.1:${server.address().port}`;
  const sid = randomUUID();
  const token = await lk.mint({ sid, sub: "alice" });
  const get = (path, t) => fetch(url + path, { headers: t ? { authorization: `Bearer ${t}` } : {} });
  let res = await get("/me", token);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { sub: "alice" });
  res = await get("/me");
  assert.equal(res.status, 401);
  assert.match(res.headers.get("www-authenticate"), /^Bearer/);
  res = await get("/me", token + "x");
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error, "invalid_token");
  res = await get("/admin", token);
  assert.equal(res.status, 401);
  assert.match(res.headers.get("www-authenticate"), /error="insufficient_user_authentication".*max_age="900"/);
  assert.equal((await get("/admin", await lk.mint({ amr: ["pwd", "otp"] }))).status, 200);
  await until(() => lk.state.streams.size === 1, 2000, "the stream");
  lk.revoke(sid);
  await until(async () => (await get("/me", token)).status === 401, 1000, "revoked through Express");
});

test("Fastify plugin: authenticate, requireStepUp, request.auth", async () => {
  const { lk, verifier } = await setup({ feed: "off" });
  const app = Fastify();
  await app.register(fastifyPlugin, { verifier });
  app.get("/me", { preHandler: app.authenticate }, async (req) => ({ sub: req.auth.sub }));
  app.get("/admin", { preHandler: app.requireStepUp({ maxAge: 900 }) }, async () => ({ ok: true }));
  await app.ready();
  closers.push(() => app.close());
  const token = await lk.mint({ sub: "bob" });
  let res = await app.inject({ url: "/me", headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json(), { sub: "bob" });
  res = await app.inject({ url: "/me", headers: { authorization: "Bearer a.b.c" } });
  assert.equal(res.statusCode, 401);
  assert.equal(res.json().error, "invalid_token");
  res = await app.inject({ url: "/admin", headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.statusCode, 401);
  assert.match(res.headers["www-authenticate"], /insufficient_user_authentication/);
  res = await app.inject({ url: "/admin", headers: { authorization: `Bearer ${await lk.mint({ amr: ["pwd", "otp"] })}` } });
  assert.equal(res.statusCode, 200);
});

test("discovery refuses metadata whose issuer differs, and a missing audience", async () => {
  const lk = await fakeIssuer();
  closers.push(lk.close);
  await assert.rejects(createVerifier({ issuer: `${lk.issuer}/`, audience: "api", metadataUrl: `${lk.issuer}/.well-known/oauth-authorization-server` }), /issuer/);
  await assert.rejects(createVerifier({ issuer: lk.issuer, audience: [] }), /audience/);
});
