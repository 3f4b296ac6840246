// The example SPA (examples/spa) in a real headless Chromium, driven by playwright-core.
//
// usage: node spa.mjs API_BASE SPA_PORT EVIL_PORT SCREENSHOT_PATH
// Serves examples/spa on http://127.0.0.1:SPA_PORT (same site as an API on 127.0.0.1)
// and a hostile page on http://localhost:EVIL_PORT (another site), then checks, printing
// one line per check and exiting 1 on the first failure:
// login; the refresh cookie is HttpOnly (not in document.cookie); a reload stays signed
// in through silent refresh; two tabs refreshing at the same moment both stay signed in;
// the other site's page cannot refresh or log out; logout in one tab makes the other
// tab's next refresh fail.
import { createServer } from 'node:http';
import { check, launchChromium, serveSpa } from './browser.mjs';

const [api, spaPort, evilPort, screenshot] = process.argv.slice(2);
const USER = 'spa-user';
const PASSWORD = 'correct horse battery staple';

// The other site: a page that tries to use the victim's cookie.
const evil = createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html' });
  res.end(`<!doctype html><script>
    window.attack = async () => {
      const out = {};
      for (const p of ['/browser/refresh', '/browser/logout']) {
        try {
          const r = await fetch(${JSON.stringify(api)} + p, { method: 'POST', credentials: 'include',
            headers: { 'Content-Type': 'application/json', 'X-Latchkey-CSRF': '1' }, body: '{}' });
          out[p] = 'status ' + r.status;
        } catch (e) { out[p] = 'blocked: ' + e.name; }
        try {
          // A "simple" request needs no preflight: it is sent, but must be refused.
          const r = await fetch(${JSON.stringify(api)} + p, { method: 'POST', credentials: 'include', mode: 'no-cors',
            headers: { 'Content-Type': 'text/plain' }, body: '{}' });
          out[p + ' no-cors'] = 'sent (' + r.type + ')';
        } catch (e) { out[p + ' no-cors'] = 'blocked: ' + e.name; }
      }
      return out;
    };
  </script>`);
});
const spa = await serveSpa(spaPort);
await new Promise((r) => evil.listen(Number(evilPort), 'localhost', r));

const browser = await launchChromium();
try {
  const context = await browser.newContext();
  const spaUrl = `http://127.0.0.1:${spaPort}/?api=${encodeURIComponent(api)}`;
  const tab1 = await context.newPage();
  await tab1.goto(spaUrl);
  await tab1.waitForSelector('[data-testid=login-form]:not([hidden])');
  await tab1.fill('input[name=username]', USER);
  await tab1.fill('input[name=password]', PASSWORD);
  await tab1.click('button[type=submit]');
  await tab1.waitForSelector('[data-testid=signed-in]:not([hidden])', { timeout: 10000 });
  check((await tab1.textContent('[data-testid=who]')) === USER, 'logs in through /browser/login');
  await tab1.waitForSelector('[data-testid=sessions] tr');
  await tab1.screenshot({ path: screenshot, fullPage: true });

  const cookies = await context.cookies(api);
  const rt = cookies.find((c) => c.name === '__Host-lk_rt');
  check(rt && rt.httpOnly && rt.secure && rt.sameSite === 'Strict' && rt.path === '/',
    `the browser holds __Host-lk_rt as HttpOnly, Secure, SameSite=Strict, Path=/ (${JSON.stringify(rt && { httpOnly: rt.httpOnly, secure: rt.secure, sameSite: rt.sameSite })})`);
  const visible = await tab1.evaluate(() => document.cookie);
  check(!visible.includes('lk_rt') && !visible.includes(rt.value), 'document.cookie does not show the refresh token');
  const stored = await tab1.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  check(!stored.includes(rt.value) && !stored.includes('eyJ'), 'nothing is kept in web storage');

  await tab1.reload();
  await tab1.waitForSelector('[data-testid=signed-in]:not([hidden])', { timeout: 10000 });
  const afterReload = (await context.cookies(api)).find((c) => c.name === '__Host-lk_rt');
  check(afterReload.value !== rt.value, 'a reload stays signed in through a silent refresh (cookie rotated)');

  const tab2 = await context.newPage();
  await tab2.goto(spaUrl);
  await tab2.waitForSelector('[data-testid=signed-in]:not([hidden])', { timeout: 10000 });
  const [a, b] = await Promise.all([
    tab1.evaluate(() => window.latchkey.refresh()),
    tab2.evaluate(() => window.latchkey.refresh()),
  ]);
  check(a === true && b === true, 'two tabs refreshing at the same moment both stay signed in');
  const [c, d] = await Promise.all([
    tab1.evaluate(() => window.latchkey.refresh()),
    tab2.evaluate(() => window.latchkey.refresh()),
  ]);
  check(c === true && d === true, '…and keep refreshing afterwards (no reuse detected)');

  const attacker = await context.newPage();
  await attacker.goto(`http://localhost:${evilPort}/`);
  const attempts = await attacker.evaluate(() => window.attack());
  console.log('     attacker page saw: ' + JSON.stringify(attempts));
  check(!Object.values(attempts).some((v) => v.startsWith('status 2')), 'another site cannot read a refresh or logout answer');
  check(await tab1.evaluate(() => window.latchkey.refresh()), 'after the attack the session is intact: tab 1 still refreshes');

  await tab1.click('[data-testid=logout]');
  await tab1.waitForSelector('[data-testid=login-form]:not([hidden])');
  const gone = !(await context.cookies(api)).some((c) => c.name === '__Host-lk_rt');
  check(gone, 'logout clears the cookie');
  const tab2Refresh = await tab2.evaluate(() => window.latchkey.refresh());
  check(tab2Refresh === false, "logout in one tab makes the other tab's next refresh fail");
  await tab2.waitForSelector('[data-testid=login-form]:not([hidden])');
  console.log('ALL PASSED');
} finally {
  await browser.close();
  spa.close();
  evil.close();
}
