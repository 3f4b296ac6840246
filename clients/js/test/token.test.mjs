// Token mode against a real latchkey (started by tests/api/js_client.rs, which passes its
// address in LATCHKEY_URL). Run: LATCHKEY_URL=http://127.0.0.1:PORT node --test test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { createClient, memoryStorage, LatchkeyError } from '../dist/index.js';

const URL_ = process.env.LATCHKEY_URL;
assert.ok(URL_, 'LATCHKEY_URL is set');
const PASSWORD = 'correct horse battery staple';

// RFC 6238 (SHA-1, 6 digits, 30 s steps) over RFC 4648 base32.
function base32(s) {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of s.replace(/=+$/, '').toUpperCase()) bits += abc.indexOf(c).toString(2).padStart(5, '0');
  const out = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) out.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(out);
}
function totp(secret, step = Math.floor(Date.now() / 30000)) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', base32(secret)).update(msg).digest();
  const o = h[19] & 15;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1e6).padStart(6, '0');
}

async function refreshCount() {
  const text = await (await fetch(URL_ + '/metrics')).text();
  return text.split('\n').filter((l) => l.startsWith('latchkey_refreshes_total'))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

async function newUser(client) {
  const username = 'u' + randomUUID().slice(0, 8);
  await client.signUp({ username, password: PASSWORD });
  return username;
}

test('50 concurrent getAccessToken() make one refresh', async () => {
  const storage = memoryStorage();
  const a = createClient({ issuer: URL_, mode: 'token', storage });
  const username = await newUser(a);
  assert.equal((await a.signIn({ username, password: PASSWORD })).status, 'signed_in');
  // A second client on the same storage has the refresh token and no access token.
  let sent = 0;
  const before = await refreshCount();
  const b = createClient({
    issuer: URL_, mode: 'token', storage,
    fetch: (i, n) => { if (String(i).endsWith('/oauth/token')) sent++; return fetch(i, n); },
  });
  const tokens = await Promise.all(Array.from({ length: 50 }, () => b.getAccessToken()));
  assert.equal(new Set(tokens).size, 1, 'all 50 got the same token');
  assert.ok(tokens[0]?.startsWith('ey'));
  assert.equal(sent, 1, 'one refresh request');
  assert.equal((await refreshCount()) - before, 1, 'the server counted one refresh');
  assert.equal(b.session.userId, a.session.userId);
  const me = await b.me();
  assert.equal(me.username, username);
});

test('storage adapter contract: async get/set/remove under one key, rotated on refresh', async () => {
  const calls = [];
  const map = new Map();
  const delay = () => new Promise((r) => setTimeout(r, 5));
  const storage = {
    async getItem(k) { await delay(); calls.push(['get', k]); return map.get(k) ?? null; },
    async setItem(k, v) { await delay(); calls.push(['set', k]); map.set(k, v); },
    async removeItem(k) { await delay(); calls.push(['remove', k]); map.delete(k); },
  };
  const c = createClient({ issuer: URL_, mode: 'token', storage });
  await c.ready;
  assert.equal(c.session, null, 'empty storage: signed out');
  assert.equal(await c.getAccessToken(), null);
  const username = await newUser(c);
  await c.signIn({ username, password: PASSWORD });
  const keys = [...map.keys()];
  assert.equal(keys.length, 1, 'one key holds the refresh token');
  const first = map.get(keys[0]);
  assert.ok(first.length > 40);
  await c.refresh();
  assert.notEqual(map.get(keys[0]), first, 'the stored token rotated');
  // A new client (an app restart) restores the session from storage.
  const restarted = createClient({ issuer: URL_, mode: 'token', storage });
  await restarted.ready;
  assert.equal(restarted.session?.userId, c.session.userId, 'session restored from storage');
  await restarted.signOut();
  assert.equal(map.size, 0, 'signOut removes the token');
  assert.ok(calls.some(([op]) => op === 'remove'));
  // The session is over on the server too.
  await c.ready;
  assert.equal(await c.refresh(), null);
});

test('second factor: mfa_required, complete({code}) and ({recoveryCode}); step-up', async () => {
  const a = createClient({ issuer: URL_, mode: 'token' });
  const username = await newUser(a);
  await a.signIn({ username, password: PASSWORD });
  const { secret } = await a.mfa.enrollTotp({ password: PASSWORD });
  const step = Math.floor(Date.now() / 30000);
  const { recovery_codes: codes } = await a.mfa.confirmTotp({ code: totp(secret, step) });
  assert.equal(codes.length, 10);

  // The session that enrolled has only the password: step-up needed.
  const events = [];
  a.onAuthStateChange((c) => events.push(c.event));
  await assert.rejects(
    a.changePassword({ currentPassword: PASSWORD, newPassword: PASSWORD + '!' }),
    (e) => e instanceof LatchkeyError && e.status === 401,
  );
  assert.ok(events.includes('STEP_UP_REQUIRED'), `STEP_UP_REQUIRED emitted (${events})`);

  const b = createClient({ issuer: URL_, mode: 'token' });
  const first = await b.signIn({ username, password: PASSWORD });
  assert.equal(first.status, 'mfa_required');
  assert.deepEqual(first.methods, ['totp', 'recovery_code']);
  await assert.rejects(first.complete({ code: '000000' === totp(secret, step + 1) ? '111111' : '000000' }),
    (e) => e.code === 'invalid_credentials');
  const done = await first.complete({ code: totp(secret, step + 1) });
  assert.equal(done.status, 'signed_in');
  assert.deepEqual(b.session.amr, ['pwd', 'otp']);
  // Stepped up: the step-up route works.
  await b.changePassword({ currentPassword: PASSWORD, newPassword: PASSWORD + '!' });

  const c = createClient({ issuer: URL_, mode: 'token' });
  const again = await c.signIn({ username, password: PASSWORD + '!' });
  assert.equal(again.status, 'mfa_required');
  assert.equal((await again.complete({ recoveryCode: codes[0] })).status, 'signed_in');
  assert.equal((await c.me()).username, username);
});

test('a 503 with Retry-After is waited out, then the refresh succeeds and the session stays', async () => {
  // A proxy in front of latchkey answers the first refresh exactly as latchkey does when
  // its database misses store.deadline: 503 temporarily_unavailable, Retry-After: 1.
  let stalled = 0;
  let stalledAt = 0;
  let retriedAt = 0;
  const proxy = createServer(async (req, res) => {
    const chunks = [];
    for await (const ch of req) chunks.push(ch);
    if (req.url === '/oauth/token') {
      if (stalled++ === 0) {
        stalledAt = Date.now();
        res.writeHead(503, { 'Content-Type': 'application/json', 'Retry-After': '1' });
        res.end('{"error":"temporarily_unavailable","error_description":"the database did not answer in time"}');
        return;
      }
      retriedAt = Date.now();
    }
    const up = await fetch(URL_ + req.url, {
      method: req.method,
      headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => !['host', 'connection', 'content-length'].includes(k))),
      body: ['GET', 'HEAD'].includes(req.method) ? undefined : Buffer.concat(chunks),
    });
    res.writeHead(up.status, Object.fromEntries(up.headers));
    res.end(Buffer.from(await up.arrayBuffer()));
  });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  try {
    const via = `http://127.0.0.1:${proxy.address().port}`;
    const c = createClient({ issuer: via, mode: 'token' });
    const username = await newUser(c);
    await c.signIn({ username, password: PASSWORD });
    const events = [];
    c.onAuthStateChange((e) => events.push(e.event));
    const token = await c.refresh();
    assert.ok(token, 'the refresh succeeded after the 503');
    assert.equal(stalled, 2, 'one 503, then one retry');
    assert.ok(retriedAt - stalledAt >= 1000, `waited Retry-After (${retriedAt - stalledAt} ms)`);
    assert.deepEqual(events, ['TOKEN_REFRESHED'], 'no sign-out');
  } finally {
    proxy.close();
  }
});

test('only invalid_grant ends a session: SESSION_ENDED with reason revoked / reuse', async () => {
  // Revoked from outside (RFC 7009).
  const storage = memoryStorage();
  const c = createClient({ issuer: URL_, mode: 'token', storage });
  const username = await newUser(c);
  await c.signIn({ username, password: PASSWORD });
  const rt = await storage.getItem(`latchkey:${URL_}:default:refresh_token`);
  assert.ok(rt, 'the refresh token is stored under latchkey:ISSUER:CLIENT:refresh_token');
  await fetch(URL_ + '/oauth/revoke', { method: 'POST', body: new URLSearchParams({ token: rt }) });
  const ended = [];
  c.onAuthStateChange((e) => ended.push(e));
  assert.equal(await c.refresh(), null);
  assert.equal(ended.length, 1);
  assert.equal(ended[0].event, 'SESSION_ENDED');
  assert.equal(ended[0].reason, 'revoked');
  assert.equal(c.session, null);
  assert.equal(await c.getAccessToken(), null);

  // Stolen: the thief replays a rotated token; the owner's next refresh says "reuse".
  const s2 = memoryStorage();
  const d = createClient({ issuer: URL_, mode: 'token', storage: s2 });
  await d.signIn({ username, password: PASSWORD });
  const stolen = await s2.getItem(`latchkey:${URL_}:default:refresh_token`);
  await d.refresh();
  await d.refresh();
  const replay = await fetch(URL_ + '/oauth/token', {
    method: 'POST', body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: stolen }),
  });
  assert.equal(replay.status, 400);
  const seen = [];
  d.onAuthStateChange((e) => seen.push(e));
  await d.refresh();
  assert.deepEqual(seen.map((e) => [e.event, e.reason]), [['SESSION_ENDED', 'reuse']]);
});

test('fetch attaches the bearer token', async () => {
  const c = createClient({ issuer: URL_, mode: 'token' });
  const username = await newUser(c);
  assert.equal(await c.getAccessToken(), null);
  await c.signIn({ username, password: PASSWORD });
  const res = await c.fetch(URL_ + '/me');
  assert.equal(res.status, 200);
  assert.equal((await res.json()).username, username);
  const sessions = await c.sessions.list();
  assert.equal(sessions.length, 1);
  assert.equal(sessions[0].current, true);
});

test('fetch: a 401 invalid_token gets one refresh and one retry, never a loop', async () => {
  const c = createClient({ issuer: URL_, mode: 'token' });
  const username = await newUser(c);
  await c.signIn({ username, password: PASSWORD });
  const first = await c.getAccessToken();
  // An API that refuses the first token it sees, then accepts the next one.
  const seen = [];
  let refuseAll = false;
  const api = createServer((req, res) => {
    seen.push(req.headers.authorization);
    if (refuseAll || req.headers.authorization === 'Bearer ' + first) {
      res.writeHead(401, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
      res.end();
    } else { res.writeHead(200); res.end('ok'); }
  });
  await new Promise((r) => api.listen(0, '127.0.0.1', r));
  try {
    const at = `http://127.0.0.1:${api.address().port}/orders`;
    const res = await c.fetch(at);
    assert.equal(res.status, 200);
    assert.equal(seen.length, 2, 'one retry');
    assert.notEqual(seen[1], seen[0], 'with a refreshed token');
    refuseAll = true;
    seen.length = 0;
    const again = await c.fetch(at);
    assert.equal(again.status, 401, 'a second 401 is returned, not retried');
    assert.equal(seen.length, 2);
  } finally {
    api.close();
  }
});

test('a device clock an hour off changes nothing: expiry counts from expires_in', async () => {
  const realNow = Date.now;
  Date.now = () => realNow() + 3600_000;
  try {
    let sent = 0;
    const c = createClient({
      issuer: URL_, mode: 'token',
      fetch: (i, n) => { if (String(i).endsWith('/oauth/token')) sent++; return fetch(i, n); },
    });
    const username = await newUser(c);
    await c.signIn({ username, password: PASSWORD });
    for (let i = 0; i < 10; i++) assert.ok(await c.getAccessToken());
    assert.equal(sent, 0, 'no refresh of a token that is not near expiry');
    assert.ok(Math.abs(c.session.expiresAt - Date.now() - 900_000) < 5000, 'expiresAt on the local clock');
  } finally {
    Date.now = realNow;
  }
});
