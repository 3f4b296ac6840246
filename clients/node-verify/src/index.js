// @latchkey/verify: offline verification of latchkey access tokens (RFC 9068) for Node
// resource servers, following latchkey's revocation feed. The behaviour mirrors the Rust
// crate `latchkey-verify` (crates/latchkey-verify); the server side is latchkey's
// docs/contract.md ("Access token", "Revocation feed", "Second factor and step-up").
//
// Fail-safe choices (as the Rust crate):
// - latchkey unreachable: verification goes on with the cached keys (a failed refetch
//   keeps them), and the revoked set keeps what it knows.
// - The feed is stale once nothing was heard from it (event, heartbeat or successful
//   poll) for `maxStaleness`; then every token is refused with `feed_stale` (or, with
//   `onStale: "accept"`, accepted without revocations).
// - An unknown `kid` refetches the JWKS at most once per `minRefetchInterval`, one fetch
//   at a time, so a flood of made-up kids costs latchkey one request per interval.

import { compactVerify, importJWK } from "jose";

/** Tokens longer than this are refused before any parsing (as latchkey does). */
export const MAX_TOKEN_BYTES = 4096;

const ALGORITHMS = new Set(["ES256", "EdDSA", "RS256"]);
// RFC 8725 §3.10: never trust keys named by the token; RFC 7515 §4.1.11: latchkey uses
// no critical extensions, so any `crit` is one we do not understand.
const FORBIDDEN_HEADERS = ["jwk", "jku", "x5u", "x5c", "crit"];
/** Time the stream may stay silent (heartbeats come every 15 s) before it is reopened. */
const SILENCE_MS = 45_000;
/** Every request but the stream gives up after this long (as the Rust crate's client). */
const REQUEST_TIMEOUT_MS = 10_000;
const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5_000;

/**
 * Why a token was refused. `code` is what the resource server answers (RFC 6750 §3.1,
 * RFC 9470 §3): `invalid_token`, `revoked`, `feed_stale` or
 * `insufficient_user_authentication`; `reason` says more for `invalid_token`.
 */
export class VerifyError extends Error {
  constructor(code, reason, message, extra = {}) {
    super(message);
    this.name = "VerifyError";
    this.code = code;
    this.reason = reason;
    Object.assign(this, extra);
  }

  /** The HTTP status to answer: 503 for `feed_stale` (not the token's fault), else 401. */
  get status() {
    return this.code === "feed_stale" ? 503 : 401;
  }

  /** The `WWW-Authenticate` value to answer with (RFC 6750 §3, RFC 9470 §3). */
  get wwwAuthenticate() {
    if (this.code === "insufficient_user_authentication") {
      return stepUpChallenge({ maxAge: this.maxAge });
    }
    if (this.code === "feed_stale") return 'Bearer realm="latchkey"';
    const description = this.code === "revoked" ? "The session has ended" : "The access token is invalid";
    return `Bearer error="invalid_token", error_description="${description}"`;
  }
}

/** The signal of a request that gives up after REQUEST_TIMEOUT_MS, or when `signal` aborts. */
const timed = (signal) => {
  const t = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  return signal ? AbortSignal.any([signal, t]) : t;
};

const invalid = (reason, message) => new VerifyError("invalid_token", reason, message);

/**
 * The RFC 9470 §3 challenge for a route that needs a second factor within `maxAge`
 * seconds: `Bearer error="insufficient_user_authentication", …, max_age="…"`.
 */
export function stepUpChallenge({ maxAge }) {
  let v = 'Bearer error="insufficient_user_authentication", error_description="A second factor is required"';
  if (maxAge !== undefined) v += `, max_age="${Math.floor(maxAge)}"`;
  return v;
}

/**
 * RFC 9470 step-up as latchkey's own step-up routes check it: `otp` in `amr` (RFC 8176)
 * and `auth_time` no older than `maxAge` seconds. Throws `insufficient_user_authentication`.
 */
export function requireStepUp(claims, { maxAge }) {
  const otp = Array.isArray(claims.amr) && claims.amr.includes("otp");
  const recent = typeof claims.auth_time === "number" && nowSeconds() - claims.auth_time <= maxAge;
  if (!otp || !recent) {
    throw new VerifyError(
      "insufficient_user_authentication",
      otp ? "auth_time_too_old" : "no_second_factor",
      "the access token's authentication is insufficient",
      { maxAge },
    );
  }
  return claims;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

function b64urlJson(part) {
  if (!/^[A-Za-z0-9_-]*$/.test(part)) throw invalid("malformed", "the access token is malformed");
  try {
    const v = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("not an object");
    return v;
  } catch {
    throw invalid("malformed", "the access token is malformed");
  }
}

/** The header checks that need no key; returns the header. */
function checkHeader(token) {
  const parts = token.split(".");
  if (parts.length !== 3) throw invalid("malformed", "the access token is malformed");
  const header = b64urlJson(parts[0]);
  // RFC 9068 §4: typ at+jwt (media types compare case-insensitively).
  const typ = typeof header.typ === "string" ? header.typ.toLowerCase() : null;
  if (typ !== "at+jwt" && typ !== "application/at+jwt") {
    throw invalid("wrong_type", "the access token has the wrong type");
  }
  if (FORBIDDEN_HEADERS.some((h) => Object.hasOwn(header, h))) {
    throw invalid("forbidden_header", "the access token's header is not allowed");
  }
  // Exact, case-sensitive names: `none` in any spelling, HS256 and the rest are refused.
  if (typeof header.alg !== "string" || !ALGORITHMS.has(header.alg)) {
    throw invalid("invalid", "the access token is invalid");
  }
  if (typeof header.kid !== "string") throw invalid("unknown_key", "the access token's signing key is unknown");
  return header;
}

/** `max-age=N` (seconds) from a Cache-Control value. */
export function maxAge(value) {
  const m = /(?:^|,)\s*max-age="?(\d+)"?/i.exec(value ?? "");
  return m ? Number(m[1]) : undefined;
}

/** The issuer's keys (RFC 7517), refetched on `max-age` and on an unknown kid. */
class KeyCache {
  constructor(fetchFn, uri, minRefetchMs) {
    this.fetch = fetchFn;
    this.uri = uri;
    this.minRefetchMs = minRefetchMs;
    this.keys = new Map();
    this.maxAgeMs = 300_000;
    this.lastFetch = 0;
    this.inFlight = null;
    this.fetches = 0;
    this.timer = null;
    this.closed = false;
  }

  async load() {
    this.lastFetch = Date.now();
    this.fetches += 1;
    const res = await this.fetch(this.uri, { headers: { accept: "application/json" }, signal: timed() });
    if (!res.ok) throw new Error(`GET ${this.uri}: ${res.status}`);
    const age = maxAge(res.headers.get("cache-control"));
    const set = await res.json();
    const keys = new Map();
    for (const jwk of Array.isArray(set?.keys) ? set.keys : []) {
      if (typeof jwk?.kid !== "string") continue;
      if (jwk.use !== undefined && jwk.use !== "sig") continue;
      // The key's own `alg` fixes the algorithm (RFC 8725 §3.1); keys without one are not used.
      if (!ALGORITHMS.has(jwk.alg)) continue;
      try {
        keys.set(jwk.kid, { alg: jwk.alg, key: await importJWK(jwk, jwk.alg) });
      } catch {
        // A key this runtime cannot import is skipped, not fatal.
      }
    }
    this.keys = keys;
    if (age !== undefined) this.maxAgeMs = age * 1000;
  }

  /** Keeps the keys already held when a fetch fails. */
  async reload() {
    if (!this.inFlight) {
      this.inFlight = this.load()
        .catch(() => {})
        .finally(() => {
          this.inFlight = null;
        });
    }
    await this.inFlight;
  }

  async key(kid) {
    const k = this.keys.get(kid);
    if (k) return k;
    if (this.inFlight) {
      await this.inFlight;
      const k2 = this.keys.get(kid);
      if (k2) return k2;
    }
    if (Date.now() - this.lastFetch < this.minRefetchMs) return undefined;
    await this.reload();
    return this.keys.get(kid);
  }

  /** Refetches when `max-age` has passed (at least hourly, at most every 10 s). */
  schedule() {
    if (this.closed) return;
    const wait = Math.min(Math.max(this.maxAgeMs, 10_000), 3_600_000);
    this.timer = setTimeout(() => this.reload().then(() => this.schedule()), wait);
    this.timer.unref?.();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
  }
}

/**
 * The revoked sessions, each kept until no token of it can still be accepted: its
 * revocation time (or, from the document, the time it was learned) plus the feed's
 * horizon plus this verifier's leeway. Pruned on a timer, whatever the feed does.
 */
export class RevokedSet {
  constructor(leewaySeconds, now = nowSeconds) {
    this.leeway = leewaySeconds;
    this.now = now;
    this.horizon = 0;
    this.entries = new Map();
    this.nextDue = Infinity;
  }

  insert(sid, revokedAt) {
    const until = revokedAt + this.horizon + this.leeway;
    const had = this.entries.get(sid);
    this.entries.set(sid, had === undefined ? until : Math.max(had, until));
    if (until < this.nextDue) this.nextDue = until;
  }

  has(sid) {
    return this.entries.has(sid);
  }

  get size() {
    return this.entries.size;
  }

  /** Drops sessions whose tokens can no longer be accepted (only when one is due). */
  prune() {
    const now = this.now();
    if (now < this.nextDue) return;
    let next = Infinity;
    for (const [sid, until] of this.entries) {
      if (until <= now) this.entries.delete(sid);
      else if (until < next) next = until;
    }
    this.nextDue = next;
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

/** Following the revocation feed (docs/contract.md "Revocation feed"). */
class Feed {
  constructor({ fetchFn, endpoint, credentials, revoked }) {
    this.fetch = fetchFn;
    this.endpoint = endpoint;
    this.auth = "Basic " + Buffer.from(`${credentials.id}:${credentials.secret}`).toString("base64");
    this.revoked = revoked;
    this.heard = 0;
    this.etag = null;
    this.lastEventId = null;
    this.stop = new AbortController();
    this.timers = [];
  }

  /** One `GET /revocations` (conditional after the first); merges what it lists. */
  async pollOnce() {
    const headers = { authorization: this.auth, accept: "application/json" };
    if (this.etag) headers["if-none-match"] = this.etag;
    const res = await this.fetch(this.endpoint, { headers, signal: timed(this.stop.signal) });
    if (res.status === 304) {
      this.heard = Date.now();
      return;
    }
    if (!res.ok) throw new Error(`GET ${this.endpoint}: ${res.status}`);
    const doc = await res.json();
    if (typeof doc?.horizon !== "number" || !Array.isArray(doc.sessions)) {
      throw new Error("the feed document has no horizon or sessions");
    }
    this.revoked.horizon = doc.horizon;
    this.etag = res.headers.get("etag");
    // When each was revoked is not listed: count from now, which keeps it longer.
    const now = nowSeconds();
    for (const sid of doc.sessions) if (typeof sid === "string") this.revoked.insert(sid, now);
    this.revoked.prune();
    this.heard = Date.now();
  }

  start(mode, pollIntervalMs) {
    const pruner = setInterval(() => this.revoked.prune(), 1000);
    pruner.unref?.();
    this.timers.push(pruner);
    if (mode === "poll") {
      const t = setInterval(() => this.pollOnce().catch(() => {}), pollIntervalMs);
      t.unref?.();
      this.timers.push(t);
    } else if (mode === "stream") {
      this.streamLoop();
    }
  }

  async streamLoop() {
    let backoff = MIN_BACKOFF_MS;
    while (!this.stop.signal.aborted) {
      if (await this.followStream()) backoff = MIN_BACKOFF_MS;
      if (this.stop.signal.aborted) return;
      // Lost (server restart, network): catch up by polling once, then reopen with
      // Last-Event-ID.
      await this.pollOnce().catch(() => {});
      await sleep(backoff, this.stop.signal);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  /** Reads the stream until it ends; true if it was open at some point. */
  async followStream() {
    const conn = new AbortController();
    const onStop = () => conn.abort();
    this.stop.signal.addEventListener("abort", onStop);
    let silence;
    let opened = false;
    const quiet = () => {
      clearTimeout(silence);
      silence = setTimeout(() => conn.abort(), SILENCE_MS);
      silence.unref?.();
    };
    try {
      const headers = { authorization: this.auth, accept: "text/event-stream" };
      if (this.lastEventId !== null) headers["last-event-id"] = String(this.lastEventId);
      quiet();
      const res = await this.fetch(`${this.endpoint.replace(/\/+$/, "")}/stream`, { headers, signal: conn.signal });
      if (!res.ok || !res.body) {
        await res.body?.cancel().catch(() => {});
        return false;
      }
      opened = true;
      this.heard = Date.now();
      const decoder = new TextDecoder();
      let buf = "";
      for await (const chunk of res.body) {
        quiet();
        this.heard = Date.now();
        buf += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buf.indexOf("\n\n")) !== -1) {
          this.event(buf.slice(0, end));
          buf = buf.slice(end + 2);
        }
        // No event is this long: not latchkey, or broken. Reconnect.
        if (buf.length > 1 << 20) return true;
      }
      return true;
    } catch {
      return opened;
    } finally {
      clearTimeout(silence);
      this.stop.signal.removeEventListener("abort", onStop);
      conn.abort();
    }
  }

  event(block) {
    let id = null;
    let data = null;
    for (const line of block.split("\n")) {
      if (line.startsWith("id:")) {
        const n = Number(line.slice(3).trim());
        if (Number.isInteger(n)) id = n;
      } else if (line.startsWith("data:")) {
        try {
          data = JSON.parse(line.slice(5).trim());
        } catch {
          data = null;
        }
      }
    }
    if (data && typeof data.sid === "string") {
      this.revoked.insert(data.sid, typeof data.revoked_at === "number" ? data.revoked_at : nowSeconds());
    }
    if (id !== null) this.lastEventId = id;
  }

  close() {
    this.stop.abort();
    for (const t of this.timers) clearInterval(t);
  }
}

/** Verifies access tokens; one instance per process, shared by every request. */
export class Verifier {
  constructor(opts, keys, revoked, feed) {
    this.issuer = opts.issuer;
    this.audiences = opts.audiences;
    this.leeway = opts.leeway;
    this.maxStalenessMs = opts.maxStaleness;
    this.onStale = opts.onStale;
    this.keys = keys;
    this.revoked = revoked;
    this.feed = feed;
  }

  /**
   * Verifies `token` (the Bearer value): size cap, `typ` at+jwt, no `jwk`/`jku`/`x5u`/
   * `x5c`/`crit`, a known `kid` whose key fixes the algorithm, the signature, exact
   * `iss`, an accepted `aud`, `exp`/`nbf`/`iat` with leeway, then the session against the
   * revocation feed. Resolves to the claims or rejects with a `VerifyError`.
   */
  async verify(token) {
    if (typeof token !== "string" || token.length > MAX_TOKEN_BYTES) {
      throw invalid("too_large", "the access token is too large");
    }
    const header = checkHeader(token);
    const key = await this.keys.key(header.kid);
    if (!key) throw invalid("unknown_key", "the access token's signing key is unknown");
    // RFC 8725 §3.1: the key fixes the algorithm; the header must name the same.
    if (header.alg !== key.alg) throw invalid("invalid", "the access token is invalid");
    let payload;
    try {
      ({ payload } = await compactVerify(token, key.key, { algorithms: [key.alg] }));
      payload = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      throw invalid("invalid", "the access token is invalid");
    }
    const c = payload;
    const str = (v) => typeof v === "string";
    const num = (v) => typeof v === "number" && Number.isFinite(v);
    const audOk = str(c?.aud) || (Array.isArray(c?.aud) && c.aud.every(str));
    if (
      c === null || typeof c !== "object" ||
      !str(c.iss) || !str(c.sub) || !audOk || !str(c.client_id) || !num(c.iat) || !num(c.exp) ||
      !str(c.jti) || !str(c.sid) || (c.nbf !== undefined && !num(c.nbf))
    ) {
      throw invalid("invalid", "the access token is invalid");
    }
    const now = nowSeconds();
    if (c.exp + this.leeway <= now) throw invalid("expired", "the access token has expired");
    if (c.iat - this.leeway > now || (c.nbf !== undefined && c.nbf - this.leeway > now)) {
      throw invalid("not_yet_valid", "the access token is not yet valid");
    }
    const auds = Array.isArray(c.aud) ? c.aud : [c.aud];
    if (c.iss !== this.issuer || !this.audiences.some((a) => auds.includes(a))) {
      throw invalid("invalid", "the access token is invalid");
    }
    if (this.onStale === "refuse" && this.feedStaleness() > this.maxStalenessMs) {
      throw new VerifyError("feed_stale", "feed_stale", "the revocation feed is stale");
    }
    if (this.revoked.has(c.sid)) throw new VerifyError("revoked", "revoked", "the access token's session has been revoked");
    return c;
  }

  /** `verify`, then RFC 9470 step-up (`otp` in `amr`, `auth_time` within `maxAge` s). */
  async verifyStepUp(token, { maxAge }) {
    return requireStepUp(await this.verify(token), { maxAge });
  }

  /** Milliseconds since the feed was last heard from (0 without a feed). */
  feedStaleness() {
    return this.feed ? Date.now() - this.feed.heard : 0;
  }

  /** Whether `sid` is known to be revoked (the lookup `verify` does). */
  isRevoked(sid) {
    return this.revoked.has(sid);
  }

  /** How many revoked sessions the verifier holds. */
  get revokedSessions() {
    return this.revoked.size;
  }

  /** Counters for monitoring: JWKS fetches made so far, revoked sessions held, staleness. */
  stats() {
    return { jwksFetches: this.keys.fetches, revokedSessions: this.revoked.size, feedStaleness: this.feedStaleness() };
  }

  /** Stops the feed and the timers. */
  close() {
    this.keys.close();
    this.feed?.close();
  }
}

/**
 * Discovers the issuer's RFC 8414 metadata, fetches its JWKS and the revocation feed,
 * then follows both in the background. Durations are in milliseconds except `leeway`
 * (seconds, as the claims).
 */
export async function createVerifier(options) {
  const {
    issuer,
    audience,
    resourceServer,
    feed = "stream",
    pollInterval = 5_000,
    maxStaleness = 60_000,
    onStale = "refuse",
    leeway = 30,
    minRefetchInterval = 10_000,
    metadataUrl,
    fetch: fetchFn = globalThis.fetch,
  } = options ?? {};
  if (typeof issuer !== "string" || !issuer) throw new TypeError("issuer is required");
  const audiences = (Array.isArray(audience) ? audience : [audience]).filter((a) => typeof a === "string");
  if (audiences.length === 0) throw new TypeError("at least one audience is required");
  if (!["stream", "poll", "off"].includes(feed)) throw new TypeError('feed is "stream", "poll" or "off"');
  if (!["refuse", "accept"].includes(onStale)) throw new TypeError('onStale is "refuse" or "accept"');

  const metaUrl = metadataUrl ?? `${issuer.replace(/\/+$/, "")}/.well-known/oauth-authorization-server`;
  const res = await fetchFn(metaUrl, { headers: { accept: "application/json" }, signal: timed() });
  if (!res.ok) throw new Error(`discovery failed: GET ${metaUrl}: ${res.status}`);
  const meta = await res.json();
  // RFC 8414 §3.3: the metadata's issuer is the configured one, exactly.
  if (meta?.issuer !== issuer) throw new Error(`discovery failed: the metadata's issuer ${JSON.stringify(meta?.issuer)} is not ${JSON.stringify(issuer)}`);
  if (typeof meta.jwks_uri !== "string") throw new Error("discovery failed: no jwks_uri");

  const keys = new KeyCache(fetchFn, meta.jwks_uri, minRefetchInterval);
  await keys.load();
  keys.schedule();
  const revoked = new RevokedSet(leeway);
  let follower = null;
  if (resourceServer && feed !== "off") {
    const endpoint = meta.latchkey_revocations_endpoint;
    if (typeof endpoint !== "string") {
      keys.close();
      throw new Error("discovery failed: no latchkey_revocations_endpoint");
    }
    follower = new Feed({ fetchFn, endpoint, credentials: resourceServer, revoked });
    try {
      await follower.pollOnce();
    } catch (e) {
      keys.close();
      throw new Error(`fetching the revocation feed failed: ${e.message}`);
    }
    follower.start(feed, pollInterval);
  }
  return new Verifier({ issuer, audiences, leeway, maxStaleness, onStale }, keys, revoked, follower);
}

function bearer(header) {
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header ?? "");
  return m ? m[1] : null;
}

/** The JSON error body and headers for a refusal (docs/contract.md "Conventions"). */
export function refusal(err) {
  const e = err instanceof VerifyError ? err : invalid("invalid", "the access token is invalid");
  const code = e.code === "revoked" ? "invalid_token" : e.code === "feed_stale" ? "temporarily_unavailable" : e.code;
  return {
    status: e.status,
    headers: { "www-authenticate": e.wwwAuthenticate, ...(e.code === "feed_stale" ? { "retry-after": "1" } : {}) },
    body: { error: code, error_description: e.message },
  };
}

async function authenticate(verifier, authorization, stepUp) {
  const token = bearer(authorization);
  if (!token) {
    return { refused: { status: 401, headers: { "www-authenticate": 'Bearer realm="latchkey"' }, body: { error: "unauthorized", error_description: "a Bearer access token is required" } } };
  }
  try {
    const claims = await verifier.verify(token);
    if (stepUp) requireStepUp(claims, stepUp);
    return { claims };
  } catch (e) {
    return { refused: refusal(e) };
  }
}

/**
 * Express middleware: `app.use(expressMiddleware(verifier))` sets `req.auth` to the
 * claims, or answers 401 (503 while the feed is stale) with `WWW-Authenticate`. With
 * `{stepUp: {maxAge}}` it also demands a recent second factor (RFC 9470).
 */
export function expressMiddleware(verifier, { stepUp } = {}) {
  return (req, res, next) => {
    authenticate(verifier, req.headers.authorization, stepUp).then(({ claims, refused }) => {
      if (refused) {
        res.status(refused.status).set(refused.headers).json(refused.body);
        return;
      }
      req.auth = claims;
      next();
    }, next);
  };
}

/**
 * Fastify plugin: `app.register(fastifyPlugin, {verifier})` decorates the instance with
 * `authenticate` (a preHandler: `{preHandler: app.authenticate}`) and `requireStepUp(
 * {maxAge})` (another preHandler), and `request.auth` with the claims. With
 * `{global: true}` every route is authenticated.
 */
export async function fastifyPlugin(fastify, { verifier, global = false }) {
  const handler = (stepUp) => async (request, reply) => {
    const { claims, refused } = await authenticate(verifier, request.headers.authorization, stepUp);
    if (refused) return reply.code(refused.status).headers(refused.headers).send(refused.body);
    request.auth = claims;
  };
  fastify.decorateRequest("auth", null);
  fastify.decorate("authenticate", handler(undefined));
  fastify.decorate("requireStepUp", (stepUp) => handler(stepUp));
  if (global) fastify.addHook("preHandler", handler(undefined));
}
// Registered without encapsulation (what fastify-plugin does), so the decorators are seen
// by the routes of the instance that registered it.
fastifyPlugin[Symbol.for("skip-override")] = true;
fastifyPlugin[Symbol.for("fastify.display-name")] = "@latchkey/verify";
