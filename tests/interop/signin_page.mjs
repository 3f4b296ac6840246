// latchkey's sign-in page (/oauth/authorize) in a real headless Chromium, driven by
// playwright-core, as the system browser of a native app (RFC 8252): the app listens on a
// loopback port, the user fills the page by its labels, the browser follows the redirect
// to the app (the page's CSP `form-action` must allow it), and the app exchanges the code.
// A wrong password first shows the page's generic error. No console error or CSP report
// on the way.
//
// usage: node signin_page.mjs API_BASE CLIENT_ID APP_PORT USER PASSWORD
// One line per check; ends with ALL PASSED; exit 1 on the first failure.
import { createServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const [api, clientId, appPort, USER, PASSWORD] = process.argv.slice(2);
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) { process.exitCode = 1; throw new Error(what); }
}

// The app's loopback listener: the redirect lands here.
let landed;
const arrived = new Promise((resolve) => { landed = resolve; });
const app = createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end('You can close this window.');
  landed(new URL(req.url, `http://127.0.0.1:${appPort}`));
});
await new Promise((r) => app.listen(Number(appPort), '127.0.0.1', r));
const redirectUri = `http://127.0.0.1:${appPort}/callback`;

const verifier = randomBytes(32).toString('base64url');
const challenge = createHash('sha256').update(verifier).digest('base64url');
const state = randomBytes(16).toString('base64url');
const url = new URL('/oauth/authorize', api);
for (const [k, v] of Object.entries({
  response_type: 'code', client_id: clientId, redirect_uri: redirectUri,
  code_challenge: challenge, code_challenge_method: 'S256', state,
})) url.searchParams.set(k, v);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));

  await page.goto(url.href);
  check(await page.getByRole('heading', { name: 'Sign in' }).isVisible(), 'the sign-in page shows');
  // Focus order: the name field has focus first, the password follows on Tab.
  check(await page.getByLabel('Username or email').evaluate((e) => e === document.activeElement),
    'the name field has focus');
  await page.keyboard.press('Tab');
  check(await page.getByLabel('Password').evaluate((e) => e === document.activeElement),
    'Tab moves to the password');

  await page.getByLabel('Username or email').fill(USER);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  check((await page.getByRole('alert').textContent()).includes('Invalid username or password'),
    'a wrong password shows the generic error');

  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const callback = await Promise.race([
    arrived, new Promise((_, no) => setTimeout(() => no(new Error('no redirect')), 10000)),
  ]);
  check(callback.searchParams.get('state') === state, 'the app gets its state back');
  const code = callback.searchParams.get('code');
  check(!!code, 'the app gets a code at its loopback port');

  const res = await fetch(new URL('/oauth/token', api), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: redirectUri,
      code_verifier: verifier, client_id: clientId,
    }),
  });
  const tokens = await res.json();
  check(res.status === 200 && !!tokens.access_token && !!tokens.refresh_token, 'the code gives tokens');
  // A wrong password answers 401, which Chrome reports on the console; nothing else.
  const other = errors.filter((e) => !e.includes('401'));
  check(other.length === 0, `no console error or CSP report (${other.join(' | ')})`);
  console.log('ALL PASSED');
} finally {
  await browser.close();
  app.close();
}
