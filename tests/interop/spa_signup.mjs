// The example SPA's first load and sign-up in a real headless Chromium, driven by
// playwright-core (docs/spa-guide.md; docs/contract.md "Endpoints", "Browser mode").
//
// usage: node spa_signup.mjs MODE API_BASE SPA_PORT [USER PASSWORD]
// MODE `anonymous`: a first load with no session shows the sign-in form, sends no
//   request that fails and logs no console error (watched through the DevTools
//   protocol: Runtime.consoleAPICalled, Runtime.exceptionThrown and Log.entryAdded,
//   where Chrome reports a failed network request itself).
// MODE `signup`: creates USER with PASSWORD through the page's sign-up form, lands
//   signed in, and finds a second sign-up with the same name refused on the page.
// One line per check; exit 1 on the first failure.
import { check, launchChromium, serveSpa } from './browser.mjs';

const [mode, api, spaPort, USER, PASSWORD] = process.argv.slice(2);

const spa = await serveSpa(spaPort);

const browser = await launchChromium();
const spaUrl = `http://127.0.0.1:${spaPort}/?api=${encodeURIComponent(api)}`;

// Every console error, uncaught exception and browser-reported error of the page, and
// every request it sends, from before the first byte of the page loads.
async function watch(page) {
  const errors = [];
  const requests = [];
  const cdp = await page.context().newCDPSession(page);
  cdp.on('Runtime.consoleAPICalled', (e) => {
    if (e.type === 'error' || e.type === 'assert') {
      errors.push('console.' + e.type + ': ' + e.args.map((a) => a.value ?? a.description).join(' '));
    }
  });
  cdp.on('Runtime.exceptionThrown', (e) => errors.push('exception: ' + e.exceptionDetails.text));
  cdp.on('Log.entryAdded', ({ entry }) => {
    if (entry.level === 'error') errors.push(`${entry.source}: ${entry.text} ${entry.url ?? ''}`);
  });
  await cdp.send('Runtime.enable');
  await cdp.send('Log.enable');
  page.on('request', (r) => requests.push(r.method() + ' ' + r.url()));
  return { errors, requests };
}

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = await watch(page);
  await page.goto(spaUrl);
  await page.waitForSelector('[data-testid=login-form]:not([hidden])', { timeout: 10000 });
  await page.waitForFunction(() => document.getElementById('status').textContent === 'Please sign in.');
  // Let anything late (a retried refresh, a timer) show up.
  await page.waitForTimeout(1500);

  if (mode === 'anonymous') {
    console.log('     requests: ' + JSON.stringify(seen.requests));
    check(seen.errors.length === 0,
      `an anonymous first load logs no console error (${JSON.stringify(seen.errors)})`);
    check(!seen.requests.some((r) => r.includes('/browser/refresh')),
      'an anonymous first load sends no refresh it knows would fail');
    // The page has not been disarmed: after a sign-in a reload does refresh.
    await page.fill('#login-form input[name=username]', USER);
    await page.fill('#login-form input[name=password]', PASSWORD);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('[data-testid=signed-in]:not([hidden])', { timeout: 10000 });
    await page.reload();
    await page.waitForSelector('[data-testid=signed-in]:not([hidden])', { timeout: 10000 });
    check(seen.requests.some((r) => r.includes('/browser/refresh')), 'after a sign-in, a reload restores the session through /browser/refresh');
    await page.click('[data-testid=logout]');
    await page.waitForSelector('[data-testid=login-form]:not([hidden])');
    const before = seen.requests.length;
    seen.errors.length = 0;
    await page.reload();
    await page.waitForFunction(() => document.getElementById('status').textContent === 'Please sign in.');
    await page.waitForTimeout(1000);
    check(!seen.requests.slice(before).some((r) => r.includes('/browser/refresh')) && seen.errors.length === 0,
      `after signing out, a reload is anonymous again: no refresh, no console error (${JSON.stringify(seen.errors)})`);
  } else if (mode === 'signup') {
    await page.click('[data-testid=signup-link]');
    await page.waitForSelector('[data-testid=signup-form]:not([hidden])');
    await page.fill('#signup-form input[name=username]', USER);
    await page.fill('#signup-form input[name=password]', PASSWORD);
    await page.click('#signup-form button[type=submit]');
    await page.waitForSelector('[data-testid=signed-in]:not([hidden])', { timeout: 10000 });
    check((await page.textContent('[data-testid=who]')) === USER, 'signs up through the page and lands signed in');
    await page.waitForSelector('[data-testid=sessions] tr');
    check(seen.errors.length === 0, `sign-up logs no console error (${JSON.stringify(seen.errors)})`);

    await page.click('[data-testid=logout]');
    await page.waitForSelector('[data-testid=login-form]:not([hidden])');
    await page.click('[data-testid=signup-link]');
    await page.fill('#signup-form input[name=username]', USER);
    await page.fill('#signup-form input[name=password]', PASSWORD);
    await page.click('#signup-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('signup-error').textContent.includes('taken'));
    check(await page.isHidden('[data-testid=signed-in]'), 'a second sign-up with the same name is refused on the page');
  } else {
    throw new Error('unknown mode ' + mode);
  }
  console.log('ALL PASSED');
} finally {
  await browser.close();
  spa.close();
}
