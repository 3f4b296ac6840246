// A native app signing in through the system browser (RFC 8252) with the authorization
// code flow and PKCE (RFC 7636), in plain Node with no dependencies: it listens on a
// loopback port of its choosing, opens latchkey's /oauth/authorize in the browser, takes
// the code the browser brings back, and exchanges it for tokens
// (docs/identity-providers-guide.md "Native apps").
//
// usage:
//   LATCHKEY_URL=http://127.0.0.1:8080 LATCHKEY_CLIENT=mobile node index.mjs [IDP]
// The client needs `redirect_uris = ["http://127.0.0.1/callback"]` (any port matches).
// IDP, if given, is an [[identity_providers]] id: sign in there instead of on latchkey's
// page. LATCHKEY_OPEN=print prints the address instead of opening a browser.
//
// A library does the same: openid-client's buildAuthorizationUrl and
// authorizationCodeGrant (tests/interop/openid_client_native.mjs), or AppAuth on mobile.
import { createServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';

const base = process.env.LATCHKEY_URL || 'http://127.0.0.1:8080';
const clientId = process.env.LATCHKEY_CLIENT || 'mobile';
const idp = process.argv[2];

// RFC 7636 §4.1-4.2: a fresh verifier per sign-in, and its S256 challenge.
const verifier = randomBytes(32).toString('base64url');
const challenge = createHash('sha256').update(verifier).digest('base64url');
const state = randomBytes(16).toString('base64url');

// RFC 8252 §7.3: listen on the loopback IP literal (not "localhost", §8.3), any free port.
let answer;
const answered = new Promise((resolve) => { answer = resolve; });
const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname !== '/callback') { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end('Signed in: you can close this window and return to the app.');
  answer(url.searchParams);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const redirectUri = `http://127.0.0.1:${server.address().port}/callback`;

const authorize = new URL('/oauth/authorize', base);
for (const [k, v] of Object.entries({
  response_type: 'code', client_id: clientId, redirect_uri: redirectUri,
  code_challenge: challenge, code_challenge_method: 'S256', state, ...(idp ? { idp } : {}),
})) authorize.searchParams.set(k, v);

if (process.env.LATCHKEY_OPEN === 'print') {
  console.log(`OPEN ${authorize.href}`);
} else {
  const opener = { darwin: 'open', win32: 'explorer' }[process.platform] || 'xdg-open';
  spawn(opener, [authorize.href], { stdio: 'ignore', detached: true }).unref();
  console.log(`Opened the browser at ${authorize.href}`);
}

const params = await answered;
server.close();
// RFC 6749 §10.12 and RFC 9207: the answer is for this request, from this server.
if (params.get('state') !== state) throw new Error('the state does not match: ignored');
const { issuer } = await (await fetch(new URL('/.well-known/oauth-authorization-server', base))).json();
if (params.get('iss') !== issuer) throw new Error('an answer from another server: ignored');
if (params.get('error')) {
  throw new Error(`sign-in failed: ${params.get('error')}: ${params.get('error_description')}`);
}

const res = await fetch(new URL('/oauth/token', base), {
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({
    grant_type: 'authorization_code', code: params.get('code'), redirect_uri: redirectUri,
    code_verifier: verifier, client_id: clientId,
  }),
});
const tokens = await res.json();
if (!res.ok) throw new Error(`token request: ${tokens.error}: ${tokens.error_description}`);
const me = await (await fetch(new URL('/me', base), {
  headers: { authorization: `Bearer ${tokens.access_token}` },
})).json();
// Keep tokens.refresh_token in the platform's secure storage (Keychain, Keystore,
// libsecret) and refresh with grant_type=refresh_token, as examples/node-token does.
console.log(`SIGNED IN ${me.username}`);
