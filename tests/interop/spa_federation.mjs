// The example SPA's "Sign in with …" in a real headless Chromium, driven by playwright-core,
// against a real OpenID provider (oidc-provider with its development interactions: any
// password; tests/interop/oidc_provider.mjs) and latchkey's browser federation
// (docs/identity-providers-guide.md "The browser flow"; RFC 6749 §4.1, OIDC Core §3.1):
// - the button leads to the provider and back signed in: a new account (sign-up);
// - signed out, the button again: the same account;
// - in another browser a password user links the provider from the SPA, sees it listed,
//   turns on TOTP and then, through the provider, is asked for the code on latchkey's
//   sign-in page before coming back signed in (amr fed otp), is refused an identity that
//   belongs to someone else (#error=access_denied, read and cleared from the address bar by
//   @latchkey/client), and unlinks it.
//
// usage: node spa_federation.mjs API_BASE SPA_PORT SCREENSHOT_PATH USER PASSWORD SERVER_NOW_MS
// The SPA is served from http://localhost:SPA_PORT, latchkey is http://localhost:PORT
// (its issuer: the provider redirects there) and the provider http://127.0.0.1:PORT.
// One line per check; ends with ALL PASSED; exit 1 on the first failure.
import { createHmac } from 'node:crypto';
import { check, launchChromium, serveSpa } from './browser.mjs';

const [api, spaPort, screenshot, USER, PASSWORD, serverNow] = process.argv.slice(2);

// RFC 6238 (SHA-1, 6 digits, 30 s) for a base32 secret at time step `step`; the server's
// clock stands still while the browser works (SERVER_NOW_MS).
function totp(secret, step) {
  let bits = 0; let value = 0; const key = [];
  for (const c of secret.replace(/=+$/, '')) {
    value = (value << 5) | 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'.indexOf(c);
    bits += 5;
    if (bits >= 8) { key.push((value >>> (bits - 8)) & 255); bits -= 8; }
  }
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', Buffer.from(key)).update(counter).digest();
  const bin = mac.readUInt32BE(mac[mac.length - 1] & 15) & 0x7fffffff;
  return String(bin % 1_000_000).padStart(6, '0');
}
const spaOrigin = `http://localhost:${spaPort}`;
const home = `${spaOrigin}/?api=${encodeURIComponent(api)}`;

const spa = await serveSpa(spaPort);
const browser = await launchChromium();

const signedIn = (page) => page.waitForSelector('[data-testid=signed-in]:not([hidden])', { timeout: 15000 });
const who = (page) => page.textContent('[data-testid=who]');
const userId = (page) => page.evaluate(() => window.latchkey.userId());
const identities = (page) => page.$$eval('[data-testid=identities] li', (lis) => lis.map((li) => li.textContent));
const identityStatus = (page, text) => page.waitForFunction(
  (t) => document.querySelector('[data-testid=identity-status]').textContent.includes(t), text, { timeout: 10000 });

// At the provider: its login form (any password), then its consent form; a provider that
// remembers the user and the grant sends the browser straight back. Returns when the
// browser is on the SPA again.
async function throughProvider(page, login) {
  for (let i = 0; i < 6; i++) {
    await page.waitForLoadState('load');
    if (page.url().startsWith(spaOrigin)) return;
    check(page.url().startsWith('http://127.0.0.1:'), `at the provider (${new URL(page.url()).pathname})`);
    if (await page.$('input[name=login]')) {
      await page.fill('input[name=login]', login);
      await page.fill('input[name=password]', 'any');
    }
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  }
  throw new Error('the provider never sent the browser back');
}

// Uncaught exceptions, and console errors of latchkey's or the SPA's origin (the
// provider's dev pages load a web font from elsewhere, which a sandbox blocks). The one
// expected error is the browser's note on the 409 latchkey answers on purpose (the
// refused unlink of a last way in).
const problems = [];
function watch(page) {
  page.on('pageerror', (e) => problems.push('exception: ' + e.message));
  page.on('console', (m) => {
    const from = m.location()?.url ?? '';
    const ours = from.startsWith(spaOrigin) || from.startsWith(api);
    if (m.type() === 'error' && ours && !/status of 409/.test(m.text())) problems.push('console: ' + m.text());
  });
}

try {
  // 1. Sign-up through the provider.
  const annContext = await browser.newContext();
  const page = await annContext.newPage();
  watch(page);
  await page.goto(home);
  await page.waitForSelector('[data-testid=signin-oidc]');
  check(await page.textContent('[data-testid=signin-oidc]') === 'Sign in with Example ID',
    'the sign-in form has a "Sign in with Example ID" button (GET /identity-providers)');
  await page.click('[data-testid=signin-oidc]');
  await throughProvider(page, 'ann');
  await signedIn(page);
  check(await who(page) === 'ann', 'back from the provider signed in: a new account named after preferred_username');
  check((await page.evaluate(() => window.latchkey.amr().join(' '))) === 'fed', 'amr is fed');
  const ann = await userId(page);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=identities] li').length === 1);
  check((await identities(page))[0].startsWith('Example ID (ann@example.com)'), 'the identity is listed on the signed-in page');
  // The only way into a passwordless account stays (409).
  await page.click('[data-testid=unlink-oidc]');
  await identityStatus(page, 'only way to sign in');
  check((await identities(page)).length === 1, 'its only way in cannot be unlinked');

  // 2. Signed out, the same button signs the same user in (the provider remembers her).
  await page.click('[data-testid=logout]');
  await page.waitForSelector('[data-testid=login-form]:not([hidden])');
  await page.click('[data-testid=signin-oidc]');
  await throughProvider(page, 'ann');
  await signedIn(page);
  check(await userId(page) === ann, 'signed in again with the button: the same account');

  // 3. Another browser: a password user links the provider, then unlinks it.
  const bobContext = await browser.newContext();
  const other = await bobContext.newPage();
  watch(other);
  await other.goto(`${home}#signup`);
  await other.waitForSelector('[data-testid=signup-form]:not([hidden])');
  await other.fill('#signup-form input[name=username]', USER);
  await other.fill('#signup-form input[name=password]', PASSWORD);
  await other.click('#signup-form button[type=submit]');
  await signedIn(other);
  check(await who(other) === USER, 'a password user signed up in a second browser');
  await other.waitForSelector('[data-testid=link-oidc]');
  check((await identities(other)).length === 0, 'no identity linked yet; "Link Example ID" offered');
  await other.click('[data-testid=link-oidc]');
  await throughProvider(other, 'bob');
  await signedIn(other);
  await identityStatus(other, 'was linked');
  check(await who(other) === USER, 'back from the provider: still the password user (a link starts no new session)');
  await other.waitForFunction(() => document.querySelectorAll('[data-testid=identities] li').length === 1);
  check((await identities(other))[0].startsWith('Example ID (bob@example.com)'), 'the linked identity is listed');
  await other.screenshot({ path: screenshot, fullPage: true });

  // The account's second factor is asked for after the provider, on latchkey's page.
  await other.click('[data-testid=mfa-setup]');
  await other.fill('#mfa-enrol-form input[name=password]', PASSWORD);
  await other.click('#mfa-enrol-form button[type=submit]');
  await other.waitForSelector('[data-testid=mfa-confirm-form]:not([hidden])');
  const secret = (await other.textContent('[data-testid=mfa-secret]')).trim();
  const step = Math.floor(Number(serverNow) / 1000 / 30);
  await other.fill('#mfa-confirm-form input[name=code]', totp(secret, step));
  await other.click('#mfa-confirm-form button[type=submit]');
  await other.waitForSelector('[data-testid=mfa-codes]:not([hidden])');
  await other.click('[data-testid=logout]');
  await other.waitForSelector('[data-testid=login-form]:not([hidden])');
  await other.click('[data-testid=signin-oidc]');
  await other.waitForURL((u) => u.href.startsWith(api), { timeout: 15000 });
  const code = other.getByLabel('Code from your authenticator app');
  await code.waitFor({ state: 'visible' });
  check(true, "with TOTP on, the provider's sign-in stops at latchkey's page for the code");
  // The confirmation spent this step's code: the next one (one step of drift).
  await code.fill(totp(secret, step + 1));
  await other.getByRole('button', { name: 'Continue' }).click();
  await signedIn(other);
  check(await who(other) === USER, 'and comes back signed in once the code is right');
  const twoStep = await other.evaluate(() => window.latchkey.amr().join(' '));
  check(twoStep === 'fed otp', `amr is fed otp (${twoStep})`);

  await other.click('[data-testid=unlink-oidc]');
  await identityStatus(other, 'was unlinked');
  await other.waitForFunction(() => document.querySelectorAll('[data-testid=identities] li').length === 0);
  check(true, 'and unlinked (the password remains a way in)');

  // ann's identity belongs to ann's account: linking it here is refused, and the answer
  // comes back in the fragment, which the library reads and removes. (Signed out at the
  // provider first: its cookies in this browser still say bob.)
  await bobContext.clearCookies({ domain: '127.0.0.1' });
  await other.click('[data-testid=link-oidc]');
  await throughProvider(other, 'ann');
  await signedIn(other);
  await identityStatus(other, 'linked to another account');
  check(await other.evaluate(() => location.hash) === '', '#error=access_denied read and cleared from the address bar');
  check((await identities(other)).length === 0 && await who(other) === USER, 'nothing linked; the session unchanged');

  check(problems.length === 0, `no uncaught exception or console error (${problems.join('; ')})`);
  console.log('ALL PASSED');
} finally {
  await browser.close();
  spa.close();
}
