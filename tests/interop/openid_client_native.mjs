// A native app (RFC 8252) built on panva's openid-client v6, against latchkey, with no
// glue but configuration: discovery, `buildAuthorizationUrl` with PKCE S256 and state,
// the user signing in on latchkey's page (played here over HTTP, as the system browser
// would), the code at a loopback redirect, `authorizationCodeGrant` (which checks state
// and the RFC 9207 `iss`), then a refresh.
//
// usage: node openid_client_native.mjs BASE_URL ISSUER CLIENT_ID REDIRECT_URI USERNAME PASSWORD
//
// ISSUER is the public issuer the server is configured with; requests to it are sent to
// BASE_URL (customFetch). Prints one `OK <step>` line per step; any failure throws.
import * as client from 'openid-client';

const [base, issuerUrl, clientId, redirectUri, username, password] = process.argv.slice(2);
const ok = (step) => console.log(`OK ${step}`);
const assert = (cond, what) => {
  if (!cond) throw new Error(`assertion failed: ${what}`);
};
const local = (url) => {
  const u = new URL(url);
  return new URL(u.pathname + u.search, base).href;
};

// 1. Discovery (RFC 8414; latchkey is not an OpenID Provider).
const config = await client.discovery(new URL(issuerUrl), clientId, undefined, client.None(), {
  algorithm: 'oauth2',
  execute: [client.allowInsecureRequests],
  [client.customFetch]: (url, init) => fetch(local(url), init),
});
assert(config.serverMetadata().supportsPKCE(), 'S256 in code_challenge_methods_supported');
ok('discovery');

// 2. The authorization URL.
const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
});
ok('buildAuthorizationUrl');

// 3. The system browser: the sign-in page, its form (hidden fields and CSRF cookie).
const page = await fetch(local(url.href), { redirect: 'manual' });
assert(page.status === 200, `sign-in page ${page.status}`);
const cookie = page.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
const html = await page.text();
const form = new URLSearchParams();
for (const m of html.split('</form>')[0].matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
  form.append(m[1], m[2].replaceAll('&quot;', '"').replaceAll('&#39;', "'").replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&'));
}
form.append('username', username);
form.append('password', password);
const signedIn = await fetch(new URL('/oauth/authorize', base), {
  method: 'POST',
  redirect: 'manual',
  headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
  body: form,
});
assert(signedIn.status === 302, `sign-in ${signedIn.status}`);
const callback = new URL(signedIn.headers.get('location'));
assert(callback.href.startsWith(redirectUri), `redirected to ${callback.href}`);
ok('signed in on the page');

// 4. The code for tokens (state, iss and PKCE checked by openid-client).
const tokens = await client.authorizationCodeGrant(config, callback, {
  pkceCodeVerifier: verifier,
  expectedState: state,
});
assert(tokens.access_token && tokens.refresh_token, 'tokens');
ok('authorizationCodeGrant');

// 5. The refresh token works and rotates.
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
assert(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, 'rotated');
ok('refreshTokenGrant');
