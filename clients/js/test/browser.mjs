// @latchkey/client in cookie mode, in Debian's headless Chromium (playwright-core from
// tests/interop), against a real latchkey process this script starts, stops and restarts
// on one database (started from tests/api/js_client.rs, which passes the binary and a
// fresh directory).
//
// usage: node browser.mjs LATCHKEY_BIN DATA_DIR API_PORT SPA_PORT PHASE_SECONDS
//
// Serves a test page and clients/js/dist on http://127.0.0.1:SPA_PORT (same site as the
// API on 127.0.0.1:API_PORT). Each tab creates a cookie-mode client and, while polling,
// calls GET /me with client.fetch every 500 ms. latchkey runs with a 5 s access-token
// lifetime. Prints one line per check and a JSON line of measurements; exits 1 on the
// first failed check.
import { createServer } from 'node:http';
import { request } from 'node:http';
import { spawn } from 'node:child_process';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import path from 'node:path';

const [bin, dataDir, apiPort, spaPort, phaseSeconds] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.resolve(here, '../../../tests/interop/package.json'));
const { chromium } = require('playwright-core');
const API = `http://127.0.0.1:${apiPort}`;
const SPA = `http://127.0.0.1:${spaPort}`;
const PHASE_MS = Number(phaseSeconds) * 1000;
const USER = 'tab-user';
const PASSWORD = 'correct horse battery staple';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const measured = {};

function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) { process.exitCode = 1; throw new Error(what); }
}

// --- latchkey, as a process we can stop and start on the same database -------------------
await mkdir(dataDir, { recursive: true });
const config = path.join(dataDir, 'latchkey.toml');
await writeFile(config, `
registration = "open"
[server]
bind = "127.0.0.1:${apiPort}"
shutdown_timeout = "2s"
[access_token]
ttl = "5s"
[log]
level = "info"
format = "json"
[rate_limits]
signup = { per_minute = 100000, burst = 100000 }
login = { per_minute = 100000, burst = 100000 }
token = { per_minute = 100000, burst = 100000 }
browser = { per_minute = 100000, burst = 100000 }
[[clients]]
id = "default"
allowed_origins = ["${SPA}"]
`);
let server = null;
// Whatever happens, the server this script started does not outlive it.
process.on('exit', () => server?.kill('SIGKILL'));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(1));
async function startServer() {
  const env = { ...process.env, LATCHKEY_CONFIG: config };
  delete env.RUST_LOG;
  const child = spawn(bin, ['serve'], {
    cwd: dataDir,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  server = child;
  let log = '';
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('latchkey did not start: ' + log)), 30000);
    child.stderr.on('data', (d) => {
      log += d;
      if (log.includes('latchkey listening')) { clearTimeout(t); resolve(); }
    });
    child.on('exit', (code) => reject(new Error(`latchkey exited ${code}: ${log}`)));
  });
  child.removeAllListeners('exit');
}
async function stopServer() {
  const child = server;
  server = null;
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exited;
}
async function refreshes() {
  const text = await (await fetch(API + '/metrics')).text();
  return text.split('\n').filter((l) => l.startsWith('latchkey_refreshes_total'))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

async function reuseDetections() {
  const text = await (await fetch(API + '/metrics')).text();
  return text.split('\n').filter((l) => l.startsWith('latchkey_refresh_reuse_detected_total'))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

// --- the page every tab loads ------------------------------------------------------------
const page = `<!doctype html><meta charset="utf-8"><title>tab</title>
<script type="module">
  import { createClient } from '/dist/index.js';
  // ?nolocks: a browser without Web Locks.
  if (location.search.includes('nolocks')) Object.defineProperty(navigator, 'locks', { value: undefined });
  const lk = createClient({ issuer: ${JSON.stringify(API)}, mode: 'cookie' });
  window.lk = lk;
  window.events = [];
  window.stats = { ok: 0, failed: 0, lastOkAt: 0, errors: [] };
  lk.onAuthStateChange((c) => window.events.push({ event: c.event, reason: c.reason, at: Date.now() }));
  let poller = null;
  window.startPolling = () => {
    clearInterval(poller);
    poller = setInterval(async () => {
      try {
        const res = await lk.fetch(${JSON.stringify(API)} + '/me');
        if (res.ok) { window.stats.ok++; window.stats.lastOkAt = Date.now(); }
        else { window.stats.failed++; window.stats.errors.push('status ' + res.status); }
      } catch (e) { window.stats.failed++; window.stats.errors.push(String(e)); }
    }, 500);
  };
  window.stopPolling = () => clearInterval(poller);
  window.resetStats = () => { window.stats = { ok: 0, failed: 0, lastOkAt: 0, errors: [] }; window.events = []; };
  // Emulated page visibility (what a background tab reports), for the hidden-tab check.
  window.setHidden = (hidden) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => hidden ? 'hidden' : 'visible' });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
    document.dispatchEvent(new Event('visibilitychange'));
  };
  lk.ready.then(() => { window.ready = true; });
</script>`;
const dist = path.resolve(here, '../dist');
const spa = createServer(async (req, res) => {
  const p = new URL(req.url, 'http://x').pathname;
  if (p === '/') { res.writeHead(200, { 'Content-Type': 'text/html' }); res.end(page); return; }
  if (p.startsWith('/dist/')) {
    try {
      const body = await readFile(path.join(dist, path.basename(p)));
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      res.end(body);
      return;
    } catch { /* 404 below */ }
  }
  res.writeHead(404); res.end();
});
await new Promise((r) => spa.listen(Number(spaPort), '127.0.0.1', r));

await startServer();
const signup = await fetch(API + '/signup', {
  method: 'POST', headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ username: USER, password: PASSWORD }),
});
check(signup.status === 201, 'signed up');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // Timers of background pages are not throttled, so that only the library decides.
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding'],
});
const context = await browser.newContext();
async function openTab() {
  const t = await context.newPage();
  await t.goto(SPA + '/');
  await t.waitForFunction(() => window.ready === true, null, { timeout: 10000 });
  return t;
}
const all = async (tabs, fn, arg) => Promise.all(tabs.map((t) => t.evaluate(fn, arg)));
const endings = (evs) => evs.filter((e) => e.event === 'SIGNED_OUT' || e.event === 'SESSION_ENDED');

try {
  // --- one tab, then five: refreshes per lifetime window, not per tab ---------------------
  const tab1 = await openTab();
  const r = await tab1.evaluate(async ([u, p]) => (await window.lk.signIn({ username: u, password: p })).status, [USER, PASSWORD]);
  check(r === 'signed_in', 'tab 1 signs in through /browser/login');
  let before = await refreshes();
  await tab1.evaluate(() => { window.resetStats(); window.startPolling(); });
  await sleep(PHASE_MS);
  await tab1.evaluate(() => window.stopPolling());
  const single = (await refreshes()) - before;
  const s1 = await tab1.evaluate(() => window.stats);
  check(s1.failed === 0 && s1.ok > 0, `one tab for ${phaseSeconds} s: ${s1.ok} calls, ${s1.failed} failed, ${single} refreshes`);

  const tabs = [tab1];
  for (let i = 0; i < 4; i++) tabs.push(await openTab());
  const signedIn = await all(tabs, () => window.lk.session !== null);
  check(signedIn.every(Boolean), 'four more tabs open signed in (the token shared over BroadcastChannel)');
  before = await refreshes();
  await all(tabs, () => { window.resetStats(); window.startPolling(); });
  await sleep(PHASE_MS);
  await all(tabs, () => window.stopPolling());
  const multi = (await refreshes()) - before;
  const stats = await all(tabs, () => ({ ...window.stats, events: window.events }));
  const calls = stats.reduce((n, s) => n + s.ok, 0);
  const failed = stats.reduce((n, s) => n + s.failed, 0);
  const outs = stats.reduce((n, s) => n + endings(s.events).length, 0);
  Object.assign(measured, { phase_seconds: Number(phaseSeconds), single_tab_refreshes: single, five_tab_refreshes: multi, five_tab_calls: calls });
  check(failed === 0, `five tabs for ${phaseSeconds} s: ${calls} calls, ${failed} failed ${failed ? JSON.stringify(stats.map((s) => s.errors.slice(0, 3))) : ''}`);
  check(outs === 0, 'no tab was signed out');
  check(single > 0 && multi <= 1.5 * single, `five tabs made ${multi} refreshes, one tab ${single} (≤ 1.5×)`);

  // --- a hidden tab makes no refresh; shown again, its next call succeeds ---------------------
  for (const t of tabs.slice(1)) await t.close();
  tabs.length = 1;
  // Hidden as a background tab reports it (document.visibilityState, visibilitychange);
  // then, as Chrome does with background tabs, frozen through the DevTools protocol
  // (Page.setWebLifecycleState) for the rest of the wait.
  await tab1.evaluate(() => window.setHidden(true));
  before = await refreshes();
  await sleep(6000); // more than one access-token lifetime, the tab hidden but running
  const cdp = await context.newCDPSession(tab1);
  await cdp.send('Page.setWebLifecycleState', { state: 'frozen' });
  await sleep(5000);
  await cdp.send('Page.setWebLifecycleState', { state: 'active' });
  const hiddenRefreshes = (await refreshes()) - before;
  measured.hidden_tab_refreshes_in_11s = hiddenRefreshes;
  check(hiddenRefreshes === 0, `a hidden tab made no refresh in 11 s (${hiddenRefreshes})`);
  await tab1.evaluate(() => window.setHidden(false));
  const next = await tab1.evaluate(async (api) => {
    const t0 = performance.now();
    const res = await window.lk.fetch(api + '/me');
    return { status: res.status, ms: Math.round(performance.now() - t0) };
  }, API);
  measured.shown_tab_first_call_ms = next.ms;
  check(next.status === 200 && next.ms < 2000, `shown again, its next call succeeds at once (${next.ms} ms, one refresh)`);

  // --- the server stopped for 15 s and restarted on the same database -------------------------
  tabs.push(await openTab(), await openTab());
  await all(tabs, () => { window.resetStats(); window.startPolling(); });
  await sleep(1500);
  await stopServer();
  const stoppedAt = Date.now();
  await sleep(15000);
  await startServer();
  const restartedAt = Date.now();
  await tab1.waitForFunction((t) => window.stats.lastOkAt > t, restartedAt, { timeout: 20000 });
  for (const t of tabs) await t.waitForFunction((x) => window.stats.lastOkAt > x, restartedAt, { timeout: 20000 });
  const back = await all(tabs, (x) => ({ lastOkAt: window.stats.lastOkAt, events: window.events, session: window.lk.session !== null }), restartedAt);
  measured.outage_seconds = Math.round((restartedAt - stoppedAt) / 1000);
  measured.outage_recovered_ms = Math.max(...back.map((b) => b.lastOkAt)) - restartedAt;
  check(back.every((b) => b.session && endings(b.events).length === 0),
    `after a ${measured.outage_seconds} s outage every tab kept its session and its calls succeed again`);
  await all(tabs, () => window.stopPolling());

  // --- theft: a stolen refresh cookie replayed from outside ends every tab's session ---------
  const stolen = (await context.cookies(API)).find((c) => c.name === '__Host-lk_rt').value;
  await tab1.evaluate(() => window.lk.refresh());
  await tab1.evaluate(() => window.lk.refresh());
  const replay = await new Promise((resolve, reject) => {
    const req = request(API + '/browser/refresh', {
      method: 'POST',
      headers: { Cookie: `__Host-lk_rt=${stolen}`, Origin: SPA, 'X-Latchkey-CSRF': '1', 'Content-Type': 'application/json' },
    }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.on('error', reject);
    req.end('{}');
  });
  check(replay === 400, `the thief's replay of a rotated cookie is refused (${replay})`);
  const theftAt = Date.now();
  // Within one refresh (the next scheduled one, or a call's 401).
  for (const t of tabs) {
    await t.waitForFunction(() => window.events.some((e) => e.event === 'SESSION_ENDED'), null, { timeout: 8000 });
  }
  const reasons = await all(tabs, () => window.events.filter((e) => e.event === 'SESSION_ENDED').map((e) => e.reason));
  measured.theft_all_tabs_ended_ms = Date.now() - theftAt;
  check(reasons.every((r) => r.length === 1 && r[0] === 'reuse'), `every tab got SESSION_ENDED reason "reuse" (${JSON.stringify(reasons)})`);

  // --- sign-in and sign-out reach every tab ------------------------------------------------
  await all(tabs, () => window.resetStats());
  await tab1.evaluate(async ([u, p]) => window.lk.signIn({ username: u, password: p }), [USER, PASSWORD]);
  for (const t of tabs) await t.waitForFunction(() => window.lk.session !== null, null, { timeout: 2000 });
  check(true, 'a sign-in in one tab reaches every tab');
  const outAt = Date.now();
  await tabs[1].evaluate(() => window.lk.signOut());
  for (const t of tabs) await t.waitForFunction(() => window.events.some((e) => e.event === 'SIGNED_OUT'), null, { timeout: 1000 });
  const outTimes = await all(tabs, () => window.events.find((e) => e.event === 'SIGNED_OUT').at);
  measured.sign_out_all_tabs_ms = Math.max(...outTimes) - outAt;
  check(measured.sign_out_all_tabs_ms <= 1000, `sign-out in one tab ended all tabs within ${measured.sign_out_all_tabs_ms} ms`);
  const afterOut = await all(tabs, async () => (await window.lk.getAccessToken()) === null);
  check(afterOut.every(Boolean), 'no tab has a token after the sign-out');

  // --- without Web Locks, tabs refreshing at once still stay signed in ---------------------
  // (latchkey answers a second refresh of the same cookie within the reuse interval with
  // the same new token.)
  const reuseBefore = await reuseDetections();
  const bare = await browser.newContext();
  const [a, b] = [await bare.newPage(), await bare.newPage()];
  await a.goto(SPA + '/?nolocks');
  await a.waitForFunction(() => window.ready === true);
  await a.evaluate(async ([u, p]) => window.lk.signIn({ username: u, password: p }), [USER, PASSWORD]);
  await b.goto(SPA + '/?nolocks');
  await b.waitForFunction(() => window.ready === true && window.lk.session !== null);
  check(await b.evaluate(() => navigator.locks === undefined), 'a tab without navigator.locks');
  for (let i = 0; i < 3; i++) {
    const got = await Promise.all([a, b].map((t) => t.evaluate(() => window.lk.refresh())));
    check(got.every(Boolean), `without Web Locks, two tabs refreshing at once both stay signed in (${i + 1}/3)`);
  }
  check((await reuseDetections()) === reuseBefore, 'and latchkey saw no reuse');
  await bare.close();

  console.log('MEASURED ' + JSON.stringify(measured));
  console.log('ALL PASSED');
} finally {
  await browser.close().catch(() => {});
  spa.close();
  if (server) await stopServer();
}
