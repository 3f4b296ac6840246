// latchkey's sign-in page (/oauth/authorize) with passkeys, in a real headless Chromium
// driven by playwright-core, with the DevTools virtual authenticator (WebAuthn Level 3
// §6.2.2 discoverable credentials; RFC 8252: the page as a native app's system browser):
// - without JavaScript the page is the password form, and no passkey button shows;
// - the user registers a passkey (through the API, from the page's origin);
// - "Sign in with a passkey": no name, no password; the app gets its code and tokens
//   with amr hwk user mfa (RFC 8176);
// - the password, then "Use a passkey" as the second step: amr pwd hwk mfa;
// - no console error and no CSP report (the page's script is latchkey's own).
//
// usage: node signin_page_passkey.mjs API_BASE CLIENT_ID APP_PORT USER PASSWORD
// API_BASE is http://localhost:PORT (WebAuthn needs a domain RP ID: "localhost").
// One line per check; ends with ALL PASSED; exit 1 on the first failure.
import { createServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { check, launchChromium } from './browser.mjs';

const [api, clientId, appPort, USER, PASSWORD] = process.argv.slice(2);

// The app's loopback listener: each redirect lands here.
const landings = [];
let waiting = null;
const app = createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end('You can close this window.');
  const url = new URL(req.url, `http://127.0.0.1:${appPort}`);
  if (url.pathname !== '/callback') return; // the browser's favicon request
  if (waiting) { waiting(url); waiting = null; } else landings.push(url);
});
await new Promise((r) => app.listen(Number(appPort), '127.0.0.1', r));
const redirectUri = `http://127.0.0.1:${appPort}/callback`;
const landed = () => landings.length ? Promise.resolve(landings.shift()) : Promise.race([
  new Promise((r) => { waiting = r; }),
  new Promise((_, no) => setTimeout(() => no(new Error('no redirect to the app')), 10000)),
]);

// The browser's own navigation to the app's page ends before the next one starts (the
// app may hear the redirect first).
const settled = (page) => page.waitForURL((u) => u.pathname === '/callback', { waitUntil: 'load' });

// A new authorization request (RFC 7636: a fresh verifier each time).
function authorization() {
  const verifier = randomBytes(32).toString('base64url');
  const url = new URL('/oauth/authorize', api);
  for (const [k, v] of Object.entries({
    response_type: 'code', client_id: clientId, redirect_uri: redirectUri, state: 'xyz',
    code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
  })) url.searchParams.set(k, v);
  return { url: url.href, verifier };
}

// The app's side: the code for tokens; the access token's amr.
async function amrOfCode(callback, verifier) {
  check(callback.searchParams.get('state') === 'xyz' && callback.searchParams.has('code'), `the app gets a code at its loopback port (${callback.search.replace(/code=[^&]+/, 'code=…')})`);
  const res = await fetch(new URL('/oauth/token', api), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: redirectUri,
      code_verifier: verifier, client_id: clientId,
    }),
  });
  const tokens = await res.json();
  check(res.status === 200, 'the code gives tokens');
  return JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url')).amr.join(' ');
}

const browser = await launchChromium();
try {
  // Without JavaScript: the password form, no passkey button.
  const plain = await (await browser.newContext({ javaScriptEnabled: false })).newPage();
  await plain.goto(authorization().url);
  check(await plain.getByLabel('Password').isVisible(), 'without JavaScript the page is the password form');
  check(!(await plain.getByRole('button', { name: 'Sign in with a passkey' }).isVisible()),
    'and offers no passkey button it could not run');

  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true,
    },
  });

  // A passkey for the password user, registered from the page's origin (latchkey's).
  let request = authorization();
  await page.goto(request.url);
  const registered = await page.evaluate(async ([username, password]) => {
    const json = { 'Content-Type': 'application/json' };
    const login = await (await fetch('/login', { method: 'POST', headers: json, body: JSON.stringify({ username, password }) })).json();
    const auth = { ...json, Authorization: 'Bearer ' + login.access_token };
    const s = await (await fetch('/me/passkeys/register/start', { method: 'POST', headers: auth })).json();
    const c = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(s.options) });
    const res = await fetch('/me/passkeys/register/finish', {
      method: 'POST', headers: auth, body: JSON.stringify({ ceremony: s.ceremony, credential: c.toJSON(), name: 'Laptop' }),
    });
    return res.status;
  }, [USER, PASSWORD]);
  check(registered === 200 || registered === 201, `a passkey registered (${registered})`);

  // Passwordless on the page.
  request = authorization();
  await page.goto(request.url);
  const button = page.getByRole('button', { name: 'Sign in with a passkey' });
  await button.waitFor({ state: 'visible' });
  check(true, 'with JavaScript the page shows "Sign in with a passkey"');
  let arrived = landed();
  await button.click();
  const passwordless = await amrOfCode(await arrived, request.verifier);
  await settled(page);
  check(passwordless === 'hwk user mfa', `no name, no password: amr is hwk user mfa (${passwordless})`);

  // The password, then the passkey as the second step (no authenticator app to ask for).
  request = authorization();
  await page.goto(request.url);
  await page.getByLabel('Username or email').fill(USER);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  const second = page.getByRole('button', { name: 'Use a passkey' });
  await second.waitFor({ state: 'visible' });
  check(!(await page.getByLabel('Code from your authenticator app').count()), 'the second step asks for the passkey, not a code');
  arrived = landed();
  await second.click();
  const twoStep = await amrOfCode(await arrived, request.verifier);
  check(twoStep === 'pwd hwk mfa', `password then passkey: amr is pwd hwk mfa (${twoStep})`);

  check(errors.length === 0, `no console error or CSP report (${errors.join(' | ')})`);
  console.log('ALL PASSED');
} finally {
  await browser.close();
  app.close();
}
