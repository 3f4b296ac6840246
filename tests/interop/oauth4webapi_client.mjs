// latchkey driven by panva's oauth4webapi (not latchkey's own code), as a JavaScript app
// and resource server would use it, with no glue but configuration.
//
// usage: node oauth4webapi_client.mjs BASE_URL ISSUER USERNAME PASSWORD RS_ID RS_SECRET
//
// ISSUER is the public issuer the server is configured with; requests to it are sent to
// BASE_URL, where the server under test listens (oauth4webapi's customFetch). Prints one
// `OK <step>` line per step and exits 0; any failure throws (exit 1).
//
// 1. RFC 8414 discovery (`algorithm: 'oauth2'`: latchkey is not an OpenID Provider).
// 2. The refresh grant as a public client (no secret), twice: each rotates.
// 3. `validateJwtAccessToken` (RFC 9068) as a resource server whose audience is the
//    issuer, and a wrong audience refused.
// 4. Introspection as a resource server with `client_secret_post` (openid-client v6's
//    default) and with `client_secret_basic`.
// 5. Revocation of the refresh token by the public client: the session ends.
import * as oauth from 'oauth4webapi';

const [base, issuerUrl, username, password, rsId, rsSecret] = process.argv.slice(2);
const issuer = new URL(issuerUrl);
const ok = (step) => console.log(`OK ${step}`);
const assert = (cond, what) => {
  if (!cond) throw new Error(`assertion failed: ${what}`);
};

// The issuer's URLs, fetched from the server under test.
const local = (url) => {
  const u = new URL(url);
  return new URL(u.pathname + u.search, base).href;
};
const options = {
  [oauth.customFetch]: (url, init) => fetch(local(url), init),
};

// 1. Discovery.
const as = await oauth.processDiscoveryResponse(
  issuer,
  await oauth.discoveryRequest(issuer, { ...options, algorithm: 'oauth2' }),
);
assert(as.issuer === issuer.href.replace(/\/$/, '') || as.issuer === issuer.href, `issuer ${as.issuer}`);
assert(as.introspection_endpoint_auth_methods_supported.includes('client_secret_post'), 'client_secret_post advertised');
ok('discovery of the RFC 8414 metadata');

// Log in (latchkey's own first-party endpoint, not an OAuth grant).
const login = async () => {
  const res = await fetch(new URL('/login', base), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  assert(res.status === 200, `login: ${res.status}`);
  return res.json();
};
const first = await login();

// 2. Refresh with rotation, as a public client.
const client = { client_id: 'default' };
let refreshToken = first.refresh_token;
let accessToken = first.access_token;
for (let i = 0; i < 2; i++) {
  const res = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshToken, options);
  const tokens = await oauth.processRefreshTokenResponse(as, client, res);
  assert(tokens.refresh_token && tokens.refresh_token !== refreshToken, 'a new refresh token');
  assert(tokens.token_type === 'bearer', `token_type ${tokens.token_type}`);
  refreshToken = tokens.refresh_token;
  accessToken = tokens.access_token;
}
ok('refresh grant as a public client, rotating each time');

// 3. RFC 9068 validation by a resource server (the default client's audience is the issuer).
const request = (token) =>
  new Request('https://rs.example.test/resource', { headers: { authorization: `Bearer ${token}` } });
const claims = await oauth.validateJwtAccessToken(as, request(accessToken), as.issuer, options);
assert(claims.client_id === 'default' && claims.sid, 'client_id and sid');
assert(!('roles' in claims) && !('scope' in claims), 'no empty roles or scope');
let refused = false;
try {
  await oauth.validateJwtAccessToken(as, request(accessToken), 'https://someone-else.example', options);
} catch {
  refused = true;
}
assert(refused, 'a wrong audience is refused');
ok('validateJwtAccessToken accepts the token and refuses another audience');

// 4. Introspection as a resource server, both ways of sending the secret.
for (const [name, auth] of [
  ['client_secret_post', oauth.ClientSecretPost(rsSecret)],
  ['client_secret_basic', oauth.ClientSecretBasic(rsSecret)],
]) {
  const rs = { client_id: rsId };
  const res = await oauth.introspectionRequest(as, rs, auth, accessToken, options);
  const answer = await oauth.processIntrospectionResponse(as, rs, res);
  assert(answer.active === true && answer.sid === claims.sid, `${name}: active`);
  const res2 = await oauth.introspectionRequest(as, rs, auth, refreshToken, options);
  const refresh = await oauth.processIntrospectionResponse(as, rs, res2);
  assert(refresh.active === false, `${name}: refresh tokens are never introspected`);
  ok(`introspection by ${name}`);
}

// 5. Revocation by the public client ends the session.
await oauth.processRevocationResponse(
  await oauth.revocationRequest(as, client, oauth.None(), refreshToken, options),
);
const rs = { client_id: rsId };
const after = await oauth.processIntrospectionResponse(
  as,
  rs,
  await oauth.introspectionRequest(as, rs, oauth.ClientSecretPost(rsSecret), accessToken, options),
);
assert(after.active === false, 'the revoked session\'s access token is inactive');
const res = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshToken, options);
let grantRefused = false;
try {
  await oauth.processRefreshTokenResponse(as, client, res);
} catch (e) {
  grantRefused = e.error === 'invalid_grant';
}
assert(grantRefused, 'the revoked refresh token is invalid_grant');
ok('revocation of the refresh token ends the session');
console.log(JSON.stringify({ done: true }));
