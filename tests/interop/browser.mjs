// What the browser tests (spa*.mjs) share: a check that stops the script at the first
// failure, the example SPA served as static files, and headless Chromium (Debian's,
// driven by playwright-core).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const spaDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples/spa');

/** One line per check; the first failure ends the script with exit code 1. */
export function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) { process.exitCode = 1; throw new Error(what); }
}

const types = { '.html': 'text/html', '.js': 'text/javascript' };

/** Serves examples/spa on 127.0.0.1:PORT (reached as localhost or 127.0.0.1). */
export async function serveSpa(port) {
  const spa = createServer(async (req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const file = p === '/' ? 'index.html' : p.slice(1);
    try {
      const body = await readFile(path.join(spaDir, path.basename(file)));
      res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream' });
      res.end(body);
    } catch { res.writeHead(404); res.end(); }
  });
  await new Promise((r) => spa.listen(Number(port), '127.0.0.1', r));
  return spa;
}

/** Headless Chromium without first-run, sync or background traffic. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}
