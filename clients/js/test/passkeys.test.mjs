// Passkeys in @latchkey/client without a browser: the base64url conversion of WebAuthn
// Level 3's JSON forms (§5.1.7, §5.1.8, §5.1.10), and each flow's requests against a
// recording fetch and a stand-in `navigator.credentials`. The real ceremonies, with
// Chromium's virtual authenticator against a real latchkey, are in
// tests/interop/spa_passkeys.mjs. Run: node --test test/passkeys.test.mjs
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  createClient, memoryStorage, LatchkeyError,
  fromB64url, toB64url, creationOptions, requestOptions, credentialJSON,
} from '../dist/index.js';

const ISSUER = 'https://auth.example.test';
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const jwt = (claims) => `${b64({ alg: 'ES256' })}.${b64({ iat: 1, exp: 901, ...claims })}.sig`;
const tokens = (amr) => ({ access_token: jwt({ sub: 'u1', sid: 's1', amr }), expires_in: 900, refresh_token: 'rt-1' });
const bytes = (...b) => new Uint8Array(b).buffer;

// A fetch that answers from `routes` ("METHOD /path" → [status, body, headers?]) and
// records every request.
function server(routes) {
  const sent = [];
  const fetch = async (url, init) => {
    const path = new URL(url).pathname;
    const body = init.body ? JSON.parse(init.body) : undefined;
    sent.push({ method: init.method, path, body, headers: Object.fromEntries(new Headers(init.headers)), credentials: init.credentials });
    const answer = routes[`${init.method} ${path}`];
    if (!answer) return new Response('{"error":"not_found"}', { status: 404 });
    const [status, json, headers = {}] = typeof answer === 'function' ? answer(body) : answer;
    return new Response(status === 204 ? null : JSON.stringify(json), {
      status, headers: { 'Content-Type': 'application/json', ...headers },
    });
  };
  return { fetch, sent };
}

// What a browser's credentials.create/get resolve to, without toJSON (the fallback path).
function fakeCredential(kind) {
  const response = kind === 'create'
    ? { clientDataJSON: bytes(1, 2), attestationObject: bytes(3, 4), getTransports: () => ['internal'] }
    : { clientDataJSON: bytes(1, 2), authenticatorData: bytes(5), signature: bytes(6, 7), userHandle: bytes(8) };
  return {
    id: 'AQI', rawId: bytes(1, 2), type: 'public-key', authenticatorAttachment: 'platform',
    response, getClientExtensionResults: () => ({}),
  };
}

let calls;
let refuse;
beforeEach(() => {
  calls = [];
  refuse = null;
  // No parse*FromJSON here: the library's own conversion runs.
  globalThis.PublicKeyCredential = function PublicKeyCredential() {};
  Object.defineProperty(globalThis, 'navigator', {
    configurable: true,
    value: {
      credentials: {
        create: async (o) => { calls.push(['create', o.publicKey]); if (refuse) throw refuse; return fakeCredential('create'); },
        get: async (o) => { calls.push(['get', o.publicKey]); if (refuse) throw refuse; return fakeCredential('get'); },
      },
    },
  });
});

test('base64url round-trips every byte value, with or without padding, and reads "+/" too', () => {
  const all = new Uint8Array(256).map((_, i) => i);
  const s = toB64url(all);
  assert.match(s, /^[A-Za-z0-9_-]+$/, 'RFC 4648 §5 alphabet, no padding');
  assert.deepEqual(new Uint8Array(fromB64url(s)), all);
  assert.deepEqual(new Uint8Array(fromB64url('-_8=')), new Uint8Array([251, 255]));
  assert.deepEqual(new Uint8Array(fromB64url('+/8')), new Uint8Array([251, 255]));
  assert.equal(toB64url(undefined), undefined);
});

test('creation options: the challenge, user id and excluded ids become bytes, the rest is kept', () => {
  const json = {
    rp: { id: 'example.test', name: 'latchkey' },
    user: { id: 'AAEC', name: 'ada', displayName: 'ada' },
    challenge: 'AwQF',
    pubKeyCredParams: [{ type: 'public-key', alg: -7 }],
    excludeCredentials: [{ type: 'public-key', id: 'Bgc' }],
    authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
  };
  const o = creationOptions(json);
  assert.deepEqual(new Uint8Array(o.challenge), new Uint8Array([3, 4, 5]));
  assert.deepEqual(new Uint8Array(o.user.id), new Uint8Array([0, 1, 2]));
  assert.equal(o.user.name, 'ada');
  assert.deepEqual(new Uint8Array(o.excludeCredentials[0].id), new Uint8Array([6, 7]));
  assert.deepEqual(o.authenticatorSelection, json.authenticatorSelection);
  assert.equal(json.challenge, 'AwQF', 'the JSON itself is not changed');
});

test('request options: the challenge and allowed ids become bytes; an empty allow list stays absent', () => {
  const o = requestOptions({ challenge: 'AwQF', rpId: 'example.test', userVerification: 'required' });
  assert.deepEqual(new Uint8Array(o.challenge), new Uint8Array([3, 4, 5]));
  assert.equal(o.allowCredentials, undefined, 'discoverable: nothing names the user');
  const named = requestOptions({ challenge: 'AA', allowCredentials: [{ type: 'public-key', id: 'Bgc' }] });
  assert.deepEqual(new Uint8Array(named.allowCredentials[0].id), new Uint8Array([6, 7]));
});

test("the browser's parse*FromJSON and toJSON are used when present", () => {
  globalThis.PublicKeyCredential.parseCreationOptionsFromJSON = (j) => ({ parsed: 'create', j });
  globalThis.PublicKeyCredential.parseRequestOptionsFromJSON = (j) => ({ parsed: 'get', j });
  try {
    assert.equal(creationOptions({ challenge: 'AA' }).parsed, 'create');
    assert.equal(requestOptions({ challenge: 'AA' }).parsed, 'get');
    assert.deepEqual(credentialJSON({ toJSON: () => ({ id: 'native' }) }), { id: 'native' });
  } finally {
    delete globalThis.PublicKeyCredential.parseCreationOptionsFromJSON;
    delete globalThis.PublicKeyCredential.parseRequestOptionsFromJSON;
  }
});

test('credential fallback: RegistrationResponseJSON and AuthenticationResponseJSON shapes', () => {
  const reg = credentialJSON(fakeCredential('create'));
  assert.deepEqual(reg, {
    id: 'AQI', rawId: 'AQI', type: 'public-key', authenticatorAttachment: 'platform', clientExtensionResults: {},
    response: { clientDataJSON: 'AQI', attestationObject: 'AwQ', transports: ['internal'] },
  });
  const auth = credentialJSON(fakeCredential('get'));
  assert.deepEqual(auth.response, { clientDataJSON: 'AQI', authenticatorData: 'BQ', signature: 'Bgc', userHandle: 'CA' });
});

test('passkeys.add: start, navigator.credentials.create, finish with the ceremony and the name', async () => {
  const { fetch, sent } = server({
    'POST /browser/login': [200, tokens(['pwd'])],
    'POST /me/passkeys/register/start': [200, { ceremony: 'c-1', options: { challenge: 'AwQF', user: { id: 'AA', name: 'ada' }, rp: { id: 'example.test' } } }],
    'POST /me/passkeys/register/finish': (b) => [201, { id: 'p1', name: b.name, created_at: 'now' }],
    'GET /me/passkeys': [200, [{ id: 'p1', name: 'Laptop', created_at: 'now', last_used_at: null }]],
    'PATCH /me/passkeys/p1': [200, { id: 'p1', name: 'Work laptop' }],
    'DELETE /me/passkeys/p1': [204],
  });
  const lk = createClient({ issuer: ISSUER, mode: 'cookie', fetch });
  await lk.signIn({ username: 'ada', password: 'pw' });
  assert.equal(lk.passkeys.supported(), true);
  const added = await lk.passkeys.add({ name: 'Laptop' });
  assert.deepEqual(added, { id: 'p1', name: 'Laptop', created_at: 'now' });
  assert.equal(calls[0][0], 'create');
  assert.deepEqual(new Uint8Array(calls[0][1].challenge), new Uint8Array([3, 4, 5]));
  const finish = sent.find((r) => r.path === '/me/passkeys/register/finish');
  assert.equal(finish.body.ceremony, 'c-1');
  assert.equal(finish.body.credential.response.attestationObject, 'AwQ');
  assert.match(finish.headers.authorization, /^Bearer ey/);
  assert.equal((await lk.passkeys.list())[0].name, 'Laptop');
  await lk.passkeys.rename('p1', 'Work laptop');
  assert.deepEqual(sent.at(-1).body, { name: 'Work laptop' });
  assert.equal(await lk.passkeys.remove('p1'), undefined);
  assert.equal(sent.at(-1).method, 'DELETE');
});

test('cookie mode: signInWithPasskey uses /browser/login/passkey/* with the CSRF header and emits SIGNED_IN', async () => {
  const { fetch, sent } = server({
    'POST /browser/login/passkey/start': [200, { ceremony: 'c-2', options: { challenge: 'AwQF', rpId: 'example.test' } }],
    'POST /browser/login/passkey/finish': [200, tokens(['hwk', 'user', 'mfa'])],
  });
  const lk = createClient({ issuer: ISSUER, mode: 'cookie', clientId: 'spa', fetch });
  const events = [];
  lk.onAuthStateChange((c) => events.push(c.event));
  const result = await lk.signInWithPasskey({ rememberMe: false });
  assert.equal(result.status, 'signed_in');
  assert.deepEqual(lk.session.amr, ['hwk', 'user', 'mfa']);
  assert.deepEqual(events, ['SIGNED_IN']);
  assert.deepEqual(sent.map((r) => r.path), ['/browser/login/passkey/start', '/browser/login/passkey/finish']);
  for (const r of sent) {
    assert.equal(r.headers['x-latchkey-csrf'], '1');
    assert.equal(r.credentials, 'include');
  }
  assert.deepEqual(sent[0].body, { client_id: 'spa' });
  assert.equal(sent[1].body.ceremony, 'c-2');
  assert.equal(sent[1].body.remember_me, false);
  assert.equal(sent[1].body.client_id, 'spa');
  assert.equal(sent[1].body.credential.response.userHandle, 'CA');
  assert.equal(calls[0][1].allowCredentials, undefined);
});

test('token mode: signInWithPasskey uses /login/passkey/* and keeps the refresh token in storage', async () => {
  const { fetch, sent } = server({
    'POST /login/passkey/start': [200, { ceremony: 'c-3', options: { challenge: 'AA' } }],
    'POST /login/passkey/finish': [200, tokens(['hwk', 'user', 'mfa'])],
  });
  const storage = memoryStorage();
  const lk = createClient({ issuer: ISSUER, mode: 'token', storage, fetch });
  assert.equal((await lk.signInWithPasskey()).status, 'signed_in');
  assert.deepEqual(sent.map((r) => r.path), ['/login/passkey/start', '/login/passkey/finish']);
  assert.equal(sent[1].body.remember_me, true);
  assert.equal(sent[0].headers['x-latchkey-csrf'], undefined);
  assert.equal(await storage.getItem(`latchkey:${ISSUER}:default:refresh_token`), 'rt-1');
});

test('second factor: methods include "passkey" and complete({passkey: true}) runs the ceremony', async () => {
  for (const mode of ['cookie', 'token']) {
    const login = mode === 'cookie' ? '/browser/login' : '/login';
    const { fetch, sent } = server({
      [`POST ${login}`]: [401, { error: 'mfa_required', mfa_token: 'm-1', mfa_methods: ['totp', 'recovery_code', 'passkey'] }],
      'POST /login/mfa/passkey/start': [200, { ceremony: 'c-4', options: { challenge: 'AA', allowCredentials: [{ type: 'public-key', id: 'AQI' }] } }],
      [`POST ${login}/mfa`]: [200, tokens(['pwd', 'hwk', 'mfa'])],
    });
    const lk = createClient({ issuer: ISSUER, mode, fetch });
    const first = await lk.signIn({ username: 'ada', password: 'pw' });
    assert.equal(first.status, 'mfa_required');
    assert.ok(first.methods.includes('passkey'));
    const done = await first.complete({ passkey: true });
    assert.equal(done.status, 'signed_in', mode);
    assert.deepEqual(lk.session.amr, ['pwd', 'hwk', 'mfa']);
    assert.deepEqual(sent[1].body, { mfa_token: 'm-1' });
    assert.equal(sent[2].path, `${login}/mfa`);
    assert.equal(sent[2].body.mfa_token, 'm-1');
    assert.equal(sent[2].body.ceremony, 'c-4');
    assert.equal(sent[2].body.credential.id, 'AQI');
    assert.equal(sent[2].body.code, undefined);
  }
});

test('a cancelled ceremony rejects with passkey_not_allowed and sends no finish', async () => {
  const { fetch, sent } = server({
    'POST /login/passkey/start': [200, { ceremony: 'c-5', options: { challenge: 'AA' } }],
  });
  const lk = createClient({ issuer: ISSUER, mode: 'token', fetch });
  refuse = new DOMException('The operation either timed out or was not allowed.', 'NotAllowedError');
  await assert.rejects(lk.signInWithPasskey(), (e) => e instanceof LatchkeyError && e.code === 'passkey_not_allowed' && e.status === 0);
  assert.deepEqual(sent.map((r) => r.path), ['/login/passkey/start']);
  assert.equal(lk.session, null);
});

test('without WebAuthn: passkey_unsupported, before any request', async () => {
  delete globalThis.PublicKeyCredential;
  const { fetch } = server({ 'POST /login/passkey/start': [200, { ceremony: 'c', options: { challenge: 'AA' } }] });
  const lk = createClient({ issuer: ISSUER, mode: 'token', fetch });
  assert.equal(lk.passkeys.supported(), false);
  await assert.rejects(lk.signInWithPasskey(), (e) => e.code === 'passkey_unsupported');
});

test('removing a passkey without a fresh factor emits STEP_UP_REQUIRED (RFC 9470)', async () => {
  const challenge = 'Bearer error="insufficient_user_authentication", acr_values="mfa", max_age=900';
  const { fetch } = server({
    'POST /login': [200, tokens(['pwd'])],
    'DELETE /me/passkeys/p1': [401, { error: 'insufficient_user_authentication' }, { 'WWW-Authenticate': challenge }],
  });
  const lk = createClient({ issuer: ISSUER, mode: 'token', fetch });
  await lk.signIn({ username: 'ada', password: 'pw' });
  const events = [];
  lk.onAuthStateChange((c) => events.push(c));
  await assert.rejects(lk.passkeys.remove('p1'), (e) => e.status === 401 && e.code === 'insufficient_user_authentication');
  assert.deepEqual(events.map((e) => [e.event, e.detail]), [['STEP_UP_REQUIRED', challenge]]);
});
