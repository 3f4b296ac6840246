// The example SPA's second factor in a real headless Chromium, driven by playwright-core
// (docs/contract.md "Second factor"): enrol an authenticator from the signed-in page,
// sign out, sign in with a TOTP code this script computes (RFC 6238 with node's own
// HMAC-SHA1, independent of the server's), then with a recovery code, and check that the
// recovery code does not work twice.
//
// usage: node spa_mfa.mjs API_BASE SPA_PORT SCREENSHOT_PATH USER PASSWORD SERVER_NOW_MS
// SERVER_NOW_MS is the server's (test-controlled, standing) clock: codes are computed
// for it. One line per check; exit 1 on the first failure.
import { createHmac } from 'node:crypto';
import { check, launchChromium, serveSpa } from './browser.mjs';

const [api, spaPort, screenshot, USER, PASSWORD, serverNow] = process.argv.slice(2);

// RFC 4648 base32 → bytes.
function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0; let value = 0; const out = [];
  for (const c of s.replace(/=+$/, '')) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) { out.push((value >>> (bits - 8)) & 255); bits -= 8; }
  }
  return Buffer.from(out);
}

// RFC 6238 §4 (RFC 4226 §5.3 truncation), SHA-1, 6 digits, for time step `step`.
function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 15;
  const bin = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(bin % 1_000_000).padStart(6, '0');
}

const spa = await serveSpa(spaPort);

const browser = await launchChromium();

async function signIn(page) {
  await page.waitForSelector('[data-testid=login-form]:not([hidden])');
  await page.fill('#login-form input[name=username]', USER);
  await page.fill('#login-form input[name=password]', PASSWORD);
  await page.click('#login-form button[type=submit]');
}

async function secondStep(page, typed) {
  await page.waitForSelector('[data-testid=mfa-form]:not([hidden])');
  await page.fill('#mfa-form input[name=code]', typed);
  await page.click('#mfa-form button[type=submit]');
}

async function signOut(page) {
  await page.click('[data-testid=logout]');
  await page.waitForSelector('[data-testid=login-form]:not([hidden])');
}

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${spaPort}/?api=${encodeURIComponent(api)}`);
  await signIn(page);
  await page.waitForSelector('[data-testid=signed-in]:not([hidden])', { timeout: 10000 });
  check(true, 'signed in with the password alone (no factor yet)');

  await page.click('[data-testid=mfa-setup]');
  await page.fill('#mfa-enrol-form input[name=password]', PASSWORD);
  await page.click('#mfa-enrol-form button[type=submit]');
  await page.waitForSelector('[data-testid=mfa-confirm-form]:not([hidden])');
  const secret = (await page.textContent('[data-testid=mfa-secret]')).trim();
  check(/^[A-Z2-7]{32}$/.test(secret), 'the page shows the base32 key');
  const qr = await page.$eval('[data-testid=mfa-qr]', (img) => ({ ok: img.complete && img.naturalWidth > 0, src: img.src }));
  check(qr.ok && qr.src.startsWith('data:image/svg+xml'), 'the QR code renders as an SVG image');

  const step = Math.floor(Number(serverNow) / 1000 / 30);
  await page.fill('#mfa-confirm-form input[name=code]', totp(secret, step));
  await page.click('#mfa-confirm-form button[type=submit]');
  await page.waitForSelector('[data-testid=mfa-codes]:not([hidden])');
  const codes = await page.$$eval('[data-testid=recovery-codes] li', (lis) => lis.map((li) => li.textContent));
  check(codes.length === 10 && codes.every((c) => /^[0-9a-z]{4}(-[0-9a-z]{4}){3}$/.test(c)), 'ten recovery codes are shown once');
  await page.screenshot({ path: screenshot, fullPage: true });

  await signOut(page);
  await signIn(page);
  await page.waitForSelector('[data-testid=mfa-form]:not([hidden])');
  check(true, 'the right password now asks for the second factor');
  // The confirmation spent this step's code: the next step's (one step of drift).
  await secondStep(page, totp(secret, step + 1));
  await page.waitForSelector('[data-testid=signed-in]:not([hidden])', { timeout: 10000 });
  check((await page.textContent('[data-testid=who]')) === USER, 'a TOTP code computed here signs in');

  await signOut(page);
  await signIn(page);
  await secondStep(page, codes[0].toUpperCase());
  await page.waitForSelector('[data-testid=signed-in]:not([hidden])', { timeout: 10000 });
  check(true, 'a recovery code signs in');

  await signOut(page);
  await signIn(page);
  await secondStep(page, codes[0]);
  await page.waitForFunction(() => document.getElementById('mfa-error').textContent.includes('wrong or was already used'));
  check(true, 'the same recovery code does not work twice');
  console.log('ALL PASSED');
} finally {
  await browser.close();
  spa.close();
}
