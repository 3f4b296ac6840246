// The example SPA's passkeys in a real headless Chromium, driven by playwright-core, with
// the DevTools virtual authenticator standing in for the device's platform authenticator
// (docs/contract.md "Passkeys (WebAuthn Level 3)"; WebAuthn Level 3 §6.2.2 discoverable
// credentials): sign up, add a passkey, see step-up refuse a second one from the
// password-only session (RFC 9470), sign out, sign in with the passkey and no password,
// use that sign-in for step-up (add a security key, remove it), then the password
// followed by the passkey as the second step.
//
// usage: node spa_passkeys.mjs API_BASE SPA_PORT SCREENSHOT_PATH USER PASSWORD
// The page is served from http://localhost:SPA_PORT (WebAuthn needs a domain RP ID, and
// latchkey's is "localhost"). One line per check; exit 1 on the first failure.
import { check, launchChromium, serveSpa } from './browser.mjs';

const [api, spaPort, screenshot, USER, PASSWORD] = process.argv.slice(2);

const spa = await serveSpa(spaPort);

const browser = await launchChromium();

// A user-verifying authenticator that keeps resident keys, as the issue asks; presence
// and verification are simulated, so no prompt waits for a person.
const authenticator = (transport) => ({
  options: {
    protocol: 'ctap2', transport, hasResidentKey: true, hasUserVerification: true,
    isUserVerified: true, automaticPresenceSimulation: true,
  },
});

const signedIn = (page) => page.waitForSelector('[data-testid=signed-in]:not([hidden])', { timeout: 10000 });
const passkeyCount = (page) => page.$$eval('[data-testid=passkeys] li', (lis) => lis.length);
const passkeyStatus = (page, text) => page.waitForFunction(
  (t) => document.querySelector('[data-testid=passkey-status]').textContent.includes(t), text, { timeout: 10000 });
const amr = (page) => page.evaluate(() => window.latchkey.amr().join(' '));

async function addPasskey(page, name) {
  await page.fill('#passkey-add-form input[name=name]', name);
  await page.click('[data-testid=passkey-add]');
}

async function signOut(page) {
  await page.click('[data-testid=logout]');
  await page.waitForSelector('[data-testid=login-form]:not([hidden])');
}

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  // Uncaught exceptions and console errors. The only expected ones are the browser's
  // notes on the 401s latchkey answers on purpose (mfa_required, the step-up refusal).
  const problems = [];
  page.on('pageerror', (e) => problems.push('exception: ' + e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push('console: ' + m.text());
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  let { authenticatorId: device } = await cdp.send('WebAuthn.addVirtualAuthenticator', authenticator('internal'));
  const held = async (id) => (await cdp.send('WebAuthn.getCredentials', { authenticatorId: id })).credentials;

  await page.goto(`http://localhost:${spaPort}/?api=${encodeURIComponent(api)}#signup`);
  await page.waitForSelector('[data-testid=signup-form]:not([hidden])');
  await page.fill('#signup-form input[name=username]', USER);
  await page.fill('#signup-form input[name=password]', PASSWORD);
  await page.click('#signup-form button[type=submit]');
  await signedIn(page);
  check(await page.isVisible('[data-testid=passkey-add]'), 'signed up; the page offers "Add a passkey"');
  check(await passkeyCount(page) === 0, 'no passkey yet');

  await addPasskey(page, 'Laptop');
  await passkeyStatus(page, 'was added');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=passkeys] li').length === 1);
  check((await page.textContent('[data-testid=passkeys] li')).startsWith('Laptop'), 'the new passkey is listed by its name');
  const [laptop] = await held(device);
  check(laptop?.isResidentCredential === true && laptop.rpId === 'localhost', 'the authenticator holds a discoverable credential for RP ID localhost');

  // The passkey is now a factor: adding another from a session opened with the password
  // alone is a step-up call, refused before any ceremony starts.
  await addPasskey(page, 'Refused');
  await passkeyStatus(page, 'needs a fresh sign-in');
  check((await held(device)).length === 1 && await passkeyCount(page) === 1, 'step-up: a password-only session cannot add a second passkey');

  // Passwordless: nothing is typed.
  await signOut(page);
  check(await page.isVisible('[data-testid=passkey-login]'), 'the sign-in page offers "Sign in with a passkey"');
  await page.click('[data-testid=passkey-login]');
  await signedIn(page);
  check((await page.textContent('[data-testid=who]')) === USER, 'signed in with the passkey, no username or password typed');
  const passwordless = await amr(page);
  check(passwordless === 'hwk user mfa', `amr is hwk user mfa (RFC 8176): ${passwordless}`);

  // The same device cannot hold two passkeys of one account (excludeCredentials).
  await addPasskey(page, 'Twice');
  await passkeyStatus(page, 'already holds a passkey');
  check(true, 'a second passkey on the same device is refused by the browser');

  // Step-up satisfied by the passkey sign-in: add a security key, then remove it (both
  // step-up calls). The laptop's authenticator is set aside meanwhile, as a browser only
  // talks to the authenticator the user picks.
  const [kept] = await held(device);
  await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: device });
  const { authenticatorId: key } = await cdp.send('WebAuthn.addVirtualAuthenticator', authenticator('usb'));
  await addPasskey(page, 'Security key');
  await passkeyStatus(page, 'Security key was added');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=passkeys] li').length === 2);
  check(true, 'after a passkey sign-in, step-up lets a second passkey be added');
  await page.click('[aria-label="Remove the passkey Security key"]');
  await passkeyStatus(page, 'Security key was removed');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=passkeys] li').length === 1);
  check((await page.textContent('[data-testid=passkeys] li')).startsWith('Laptop'), 'and removed (a step-up call); the laptop passkey stays');
  await page.screenshot({ path: screenshot, fullPage: true });
  await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: key });
  ({ authenticatorId: device } = await cdp.send('WebAuthn.addVirtualAuthenticator', authenticator('internal')));
  await cdp.send('WebAuthn.addCredential', { authenticatorId: device, credential: kept });

  // The password, then the passkey as the second step.
  await signOut(page);
  await page.fill('#login-form input[name=username]', USER);
  await page.fill('#login-form input[name=password]', PASSWORD);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('[data-testid=mfa-passkey]:not([hidden])');
  check(!(await page.isVisible('#mfa-code-step')), 'the right password asks for the passkey (no authenticator-app code to ask for)');
  await page.click('[data-testid=mfa-passkey]');
  await signedIn(page);
  const twoStep = await amr(page);
  check(twoStep === 'pwd hwk mfa', `password then passkey: amr is pwd hwk mfa: ${twoStep}`);

  check(await page.evaluate(() => typeof PublicKeyCredential.parseRequestOptionsFromJSON === 'function'),
    "so far this Chromium's own JSON conversion ran");

  // A browser without the Level 3 JSON methods (Safari before 18, Firefox before 119):
  // the library's base64url fallback runs the passwordless sign-in and a registration.
  const [now] = await held(device);
  const older = await browser.newContext();
  await older.addInitScript(() => {
    delete PublicKeyCredential.parseCreationOptionsFromJSON;
    delete PublicKeyCredential.parseRequestOptionsFromJSON;
    delete PublicKeyCredential.prototype.toJSON;
  });
  const oldPage = await older.newPage();
  oldPage.on('pageerror', (e) => problems.push('exception: ' + e.message));
  const oldCdp = await older.newCDPSession(oldPage);
  await oldCdp.send('WebAuthn.enable');
  const { authenticatorId: same } = await oldCdp.send('WebAuthn.addVirtualAuthenticator', authenticator('internal'));
  await oldCdp.send('WebAuthn.addCredential', { authenticatorId: same, credential: now });
  await oldPage.goto(`http://localhost:${spaPort}/?api=${encodeURIComponent(api)}`);
  await oldPage.waitForSelector('[data-testid=passkey-login]:not([hidden])');
  check(await oldPage.evaluate(() => PublicKeyCredential.parseRequestOptionsFromJSON === undefined), 'a second browser without parseRequestOptionsFromJSON');
  await oldPage.click('[data-testid=passkey-login]');
  await signedIn(oldPage);
  check((await oldPage.textContent('[data-testid=who]')) === USER, 'the fallback conversion signs in with the passkey too');
  await oldCdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: same });
  await oldCdp.send('WebAuthn.addVirtualAuthenticator', authenticator('usb'));
  await addPasskey(oldPage, 'Old browser key');
  await passkeyStatus(oldPage, 'Old browser key was added');
  check(true, 'and registers a new passkey (creation options and credential converted by hand)');

  check(problems.length === 0, `no uncaught exception or console error (${problems.join('; ')})`);
  console.log('ALL PASSED');
} finally {
  await browser.close();
  spa.close();
}
