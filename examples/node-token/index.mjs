// A token-mode client in Node with @latchkey/client (clients/js): a command-line tool
// that signs in once, keeps its refresh token in a file only its user can read, and
// calls an API with a fresh access token however long it runs.
//
// usage:
//   npm run --prefix ../../clients/js build        # once: builds dist/
//   LATCHKEY_URL=http://127.0.0.1:8080 node index.mjs login USERNAME   # asks the password (and a code)
//   LATCHKEY_URL=http://127.0.0.1:8080 node index.mjs me               # uses the stored session
//   LATCHKEY_URL=http://127.0.0.1:8080 node index.mjs logout
//
// In an app of your own: `npm install @latchkey/client` and import it by name.
import { createClient } from '../../clients/js/dist/index.js';
import { readFile, writeFile, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline/promises';
import { homedir } from 'node:os';
import path from 'node:path';

const FILE = process.env.LATCHKEY_SESSION_FILE || path.join(homedir(), '.latchkey-example-session.json');

// The storage adapter: three async calls over one JSON file, created with mode 0600.
// (In React Native use expo-secure-store or react-native-keychain the same way; in
// Electron, safeStorage. See clients/js/README.md.)
const fileStorage = {
  async getItem(key) {
    try { return JSON.parse(await readFile(FILE, 'utf8'))[key] ?? null; } catch { return null; }
  },
  async setItem(key, value) {
    let all = {};
    try { all = JSON.parse(await readFile(FILE, 'utf8')); } catch { /* first write */ }
    all[key] = value;
    await writeFile(FILE, JSON.stringify(all), { mode: 0o600 });
  },
  async removeItem(key) {
    await rm(FILE, { force: true });
    void key;
  },
};

const lk = createClient({
  issuer: process.env.LATCHKEY_URL || 'http://127.0.0.1:8080',
  mode: 'token',
  storage: fileStorage,
});
lk.onAuthStateChange(({ event, reason }) => {
  if (event === 'SESSION_ENDED') console.error(`session ended (${reason}); log in again`);
});

const [command, username] = process.argv.slice(2);
if (command === 'login') {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const password = process.env.LATCHKEY_PASSWORD ?? (await rl.question('password: '));
  let result = await lk.signIn({ username, password });
  if (result.status === 'mfa_required') {
    const code = process.env.LATCHKEY_CODE ?? (await rl.question('code from your authenticator app: '));
    result = await result.complete({ code });
  }
  rl.close();
  console.log(`signed in as ${(await lk.me()).username}`);
} else if (command === 'me') {
  await lk.ready;
  if (!lk.session) { console.error('not signed in'); process.exit(1); }
  // Any API that accepts latchkey's tokens; here latchkey's own /me.
  const res = await lk.fetch(`${process.env.LATCHKEY_URL || 'http://127.0.0.1:8080'}/me`);
  console.log(JSON.stringify(await res.json()));
} else if (command === 'logout') {
  await lk.ready;
  await lk.signOut();
  console.log('signed out');
} else {
  console.error('usage: node index.mjs login USERNAME | me | logout');
  process.exit(2);
}
