// The example SPA's "forgot password" and "reset password" pages in a real headless
// Chromium, driven by playwright-core, with the mail read from the test's SMTP sink.
//
// usage: node spa_recovery.mjs API_BASE SPA_PORT SINK_DIR SCREENSHOT_PATH USER OLD NEW
// Serves examples/spa on http://127.0.0.1:SPA_PORT, then: asks for a reset on the
// forgot page; reads the mail the SMTP sink (tests/smtp_sink.py) wrote to SINK_DIR;
// follows its link; checks the token left the address bar; sets a new password; signs
// in with it; and checks the link does not work twice. One line per check; exit 1 on
// the first failure.
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { check, launchChromium, serveSpa } from './browser.mjs';

const [api, spaPort, sinkDir, screenshot, USER, OLD, NEW] = process.argv.slice(2);

const spa = await serveSpa(spaPort);

async function resetMail() {
  for (let i = 0; i < 200; i++) {
    const names = (await readdir(sinkDir)).filter((n) => n.endsWith('.json')).sort();
    for (const n of names) {
      const m = JSON.parse(await readFile(path.join(sinkDir, n), 'utf8'));
      if (m.headers.Subject === 'Reset your password') return m;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no reset mail arrived');
}

const browser = await launchChromium();
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${spaPort}/?api=${encodeURIComponent(api)}`);
  await page.waitForSelector('[data-testid=login-form]:not([hidden])');
  await page.click('[data-testid=forgot-link]');
  await page.waitForSelector('[data-testid=forgot-form]:not([hidden])');
  await page.fill('#forgot-form input[name=who]', USER);
  await page.click('#forgot-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('[data-testid=forgot-result]').textContent.includes('on its way'));
  check(true, 'the forgot page asks for a reset link (202)');

  const mail = await resetMail();
  const link = mail.text.split('\n').map((l) => l.trim()).find((l) => l.includes('token='));
  check(link && link.startsWith(`http://127.0.0.1:${spaPort}/`), `the mail holds a link to the SPA's reset page`);
  check(mail.html.includes('token='), 'the HTML body holds the link too');

  await page.goto(link);
  await page.waitForSelector('[data-testid=reset-form]:not([hidden])');
  check(!page.url().includes('token='), 'the reset page takes the token out of the address bar');
  await page.screenshot({ path: screenshot, fullPage: true });
  await page.fill('#reset-form input[name=new_password]', NEW);
  await page.click('#reset-form button[type=submit]');
  await page.waitForSelector('[data-testid=login-form]:not([hidden])');
  check((await page.textContent('[data-testid=status]')).includes('password has been changed'), 'a new password is set');

  await page.fill('#login-form input[name=username]', USER);
  await page.fill('#login-form input[name=password]', OLD);
  await page.click('#login-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('login-error').textContent.length > 0);
  check(true, 'the old password no longer signs in');
  await page.fill('#login-form input[name=password]', NEW);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('[data-testid=signed-in]:not([hidden])', { timeout: 10000 });
  check((await page.textContent('[data-testid=who]')) === USER, 'the new password signs in');

  const again = await context.newPage();
  await again.goto(link);
  await again.waitForSelector('[data-testid=reset-form]:not([hidden])');
  await again.fill('#reset-form input[name=new_password]', 'one more new passphrase');
  await again.click('#reset-form button[type=submit]');
  await again.waitForFunction(() => document.querySelector('[data-testid=reset-result]').textContent.includes('invalid, used or expired'));
  check(true, 'the link works only once');
  console.log('ALL PASSED');
} finally {
  await browser.close();
  spa.close();
}
