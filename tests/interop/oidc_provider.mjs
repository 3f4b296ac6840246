// An OpenID provider on localhost for tests/api/federation_oidc_provider.rs and
// spa_federation.rs:
// oidc-provider (OpenID-certified) with its development interactions (any login, any
// password), one confidential client `latchkey` and three accounts:
//   ann      email ann@example.com, verified
//   mallory  email ann@example.com, NOT verified (must never join ann's account)
//   bob      email bob@example.com, verified (linked by a password user in spa_federation.mjs)
// Usage: node oidc_provider.mjs <latchkey callback URL> [PORT]. Prints {"issuer": …} as one line
// once listening; runs until killed or stdin closes.
import Provider from 'oidc-provider';
import { createServer } from 'node:http';

const [redirectUri, port = '0'] = process.argv.slice(2);
const accounts = {
  ann: { email: 'ann@example.com', email_verified: true, preferred_username: 'ann' },
  mallory: { email: 'ann@example.com', email_verified: false, preferred_username: 'mallory' },
  bob: { email: 'bob@example.com', email_verified: true, preferred_username: 'bob' },
};

const server = createServer();
await new Promise((resolve) => server.listen(Number(port), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'latchkey',
    client_secret: 'oidc-provider-test-secret',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username'],
  },
  // The claims go into the ID token itself (latchkey reads no userinfo).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
});
// Quiet: the test reads stdout for the one line.
provider.on('server_error', (_ctx, err) => console.error(err));
server.on('request', provider.callback());
console.log(JSON.stringify({ issuer }));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
