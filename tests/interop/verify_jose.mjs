// Independent check of latchkey access tokens with Node's `jose` (panva), the way a
// JavaScript resource server verifies: createRemoteJWKSet against the served JWKS.
//
// usage: node verify_jose.mjs BASE_URL AUDIENCE < tokens
// One token per line in, one line out: `VERIFIED {"alg":…,"kid":…}` or `REFUSED code`.
// JOSE_COOLDOWN_MS sets how soon jose may refetch the JWKS on an unknown kid (its default
// is 30 s; the tests lower it so a rotation needs no sleep).
import { createInterface } from 'node:readline';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [base, audience] = process.argv.slice(2);
const metadata = await (await fetch(`${base}/.well-known/oauth-authorization-server`)).json();
const jwks = createRemoteJWKSet(new URL(new URL(metadata.jwks_uri).pathname, base), {
  cooldownDuration: Number(process.env.JOSE_COOLDOWN_MS ?? 30000),
});

for await (const line of createInterface({ input: process.stdin })) {
  const token = line.trim();
  try {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer: metadata.issuer,
      audience,
      typ: 'at+jwt',
      algorithms: ['ES256', 'EdDSA', 'RS256'],
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id', 'sid', 'auth_time', 'amr'],
    });
    // scope and roles are omitted when empty; present, they are never empty.
    if ('roles' in payload && !(Array.isArray(payload.roles) && payload.roles.length > 0)) {
      console.log('REFUSED roles must be a non-empty array when present');
    } else if ('scope' in payload && !(typeof payload.scope === 'string' && payload.scope !== '')) {
      console.log('REFUSED scope must be a non-empty string when present');
    } else {
      console.log('VERIFIED ' + JSON.stringify({ alg: protectedHeader.alg, kid: protectedHeader.kid }));
    }
  } catch (e) {
    console.log(`REFUSED ${e.code ?? e.name}: ${e.message}`);
  }
}
