// latchkey example SPA, built on @latchkey/client in cookie mode (clients/js,
// docs/spa-guide.md). The library does what this page used to do by hand:
// - the access token is kept in memory, never in storage; the refresh token is an
//   HttpOnly cookie set by latchkey, which no script can read;
// - /browser/* calls carry credentials, the X-Latchkey-CSRF header and a JSON body;
// - silent refresh ahead of expiry, one at a time across the tabs (Web Locks), the new
//   token shared over BroadcastChannel; sign-in and sign-out reach every tab;
// - an account with a second factor answers the password with `mfa_required`; the page
//   asks for the code (or a recovery code, or a passkey) and the library finishes the
//   login;
// - passkeys (passkeys.js): passwordless sign-in, and adding and removing them;
// - identity providers (providers.js): "Sign in with …", linking and unlinking.
// No bundler: latchkey-client.js and webauthn.js are clients/js/dist/index.js and
// webauthn.js (symlinks here; copy both when you deploy, or import '@latchkey/client'
// through your bundler).
// The API base comes from ?api=…, else http://localhost:8080.
import { createClient } from './latchkey-client.js';
import { passkeyProblem, setUpPasskeys } from './passkeys.js';
import { setUpProviders } from './providers.js';

const API = new URLSearchParams(location.search).get('api') || 'http://localhost:8080';

// "Not signed in" is a normal state, not an error. The refresh cookie is HttpOnly, so
// this page cannot see whether one exists; without help, every anonymous load would
// send /browser/refresh and get a 401, which the browser logs as a console error. So
// the page keeps its own marker, a cookie holding no secret (`lk_signed_in=1`), set on
// sign-in with the refresh cookie's kind of lifetime (a browser-session cookie unless
// "keep me signed in") and removed on sign-out. Without it a refresh is answered here,
// as latchkey would answer it (invalid_grant), and never sent. A stale marker costs one
// refresh that fails, after which it is gone.
const MARKER = 'lk_signed_in';
const marked = () => document.cookie.split('; ').includes(MARKER + '=1');
function mark(rememberMe) {
  document.cookie = `${MARKER}=1; Path=/; SameSite=Strict${rememberMe ? '; Max-Age=34560000' : ''}`;
}
const unmark = () => { document.cookie = `${MARKER}=; Path=/; SameSite=Strict; Max-Age=0`; };
function fetchUnlessAnonymous(input, init) {
  if (!marked() && String(input).endsWith('/browser/refresh')) {
    return Promise.resolve(new Response(
      JSON.stringify({ error: 'invalid_grant', error_description: 'not signed in on this browser' }),
      { status: 400, headers: { 'Content-Type': 'application/json' } },
    ));
  }
  return fetch(input, init);
}

const lk = createClient({ issuer: API, mode: 'cookie', fetch: fetchUnlessAnonymous });

let pendingMfa = null; // memory only: the pending login's second step (5 minutes)

const $ = (id) => document.getElementById(id);
const status = (text) => { $('status').textContent = text; };
const passkeys = setUpPasskeys(lk, { mark, unmark });
const providers = setUpProviders(lk, { mark, unmark });

function signedOut(message) {
  $('signed-in').hidden = true;
  $('mfa-form').hidden = true;
  $('forgot-form').hidden = true;
  $('reset-form').hidden = true;
  $('signup-form').hidden = true;
  $('login-form').hidden = false;
  passkeys.clear();
  providers.clear();
  status(message || 'Signed out.');
}

lk.onAuthStateChange(({ event, reason }) => {
  if (event === 'SIGNED_IN') showSignedIn();
  if (event === 'SIGNED_OUT') {
    unmark();
    signedOut();
  }
  if (event === 'SESSION_ENDED') {
    unmark();
    signedOut(reason === 'reuse'
      ? 'Your session was ended because it was used from somewhere else. Please sign in again.'
      : 'Your session has ended; please sign in.');
  }
});

// A refresh on demand (the "Refresh now" button and the end-to-end test): true while
// the session lives.
async function refresh() {
  try {
    return (await lk.refresh()) !== null;
  } catch (e) {
    status('Network error: ' + e.message);
    return false;
  }
}

async function showSignedIn() {
  let user;
  try { user = await lk.me(); } catch { return; }
  $('who').textContent = user.username;
  $('login-form').hidden = true;
  $('mfa-form').hidden = true;
  $('signed-in').hidden = false;
  status('Signed in.');
  await Promise.all([showSessions(), passkeys.showPasskeys(), providers.showIdentities()]);
}

async function showSessions() {
  let sessions;
  try { sessions = await lk.sessions.list(); } catch { return; }
  const rows = sessions.map((s) => {
    const tr = document.createElement('tr');
    if (s.current) tr.className = 'current';
    for (const text of [s.client_id, new Date(s.created_at).toLocaleString(),
      new Date(s.last_active_at).toLocaleString(), (s.user_agent || '').slice(0, 40)]) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.appendChild(td);
    }
    const td = document.createElement('td');
    if (s.current) {
      td.textContent = 'this one';
    } else {
      const b = document.createElement('button');
      b.textContent = 'Revoke';
      b.onclick = async () => { await lk.sessions.revoke(s.id).catch(() => {}); await showSessions(); };
      td.appendChild(b);
    }
    tr.appendChild(td);
    return tr;
  });
  $('sessions').replaceChildren(...rows);
}

// The marker is set before the answer arrives, so that it is there whenever a session
// is; a sign-in that fails takes it away again.
async function signIn(username, password, rememberMe) {
  mark(rememberMe);
  try {
    return await lk.signIn({ username, password, rememberMe });
  } catch (e) {
    if (!lk.session) unmark();
    throw e;
  }
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  let result;
  try {
    result = await signIn(form.get('username'), form.get('password'), form.get('remember_me') === 'on');
  } catch (e) {
    $('login-error').textContent = e.status === 429 ? 'Too many attempts; wait a moment.' : 'Wrong username or password.';
    return;
  }
  $('login-error').textContent = '';
  event.target.reset();
  if (result.status === 'mfa_required') {
    // The password was right; the second step finishes the login.
    pendingMfa = result;
    const code = result.methods.includes('totp');
    const passkey = result.methods.includes('passkey');
    $('login-form').hidden = true;
    $('mfa-error').textContent = '';
    $('mfa-code-step').hidden = !code;
    $('mfa-passkey').hidden = !passkey;
    $('mfa-form').hidden = false;
    status(code && passkey ? 'Enter the code from your authenticator app, or use a passkey.'
      : code ? 'Enter the code from your authenticator app.' : 'Confirm with your passkey.');
  }
  // signed_in: the SIGNED_IN event shows the page.
});

// Six digits are an app's code; anything else is taken for a recovery code.
$('mfa-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const typed = new FormData(event.target).get('code').trim();
  secondStep(/^[0-9]{3} ?[0-9]{3}$/.test(typed) ? { code: typed } : { recoveryCode: typed });
});

// The passkey as the second step: the library asks latchkey for a ceremony bound to this
// login, then the browser for the assertion.
$('mfa-passkey').addEventListener('click', () => secondStep({ passkey: true }));

async function secondStep(factor) {
  try {
    await pendingMfa.complete(factor);
    pendingMfa = null;
    $('mfa-form').reset();
  } catch (e) {
    if (e.code === 'invalid_grant') {
      // Expired, used, or too many wrong codes: start again with the password.
      pendingMfa = null;
      if (!lk.session) unmark();
      signedOut('That sign-in has expired; please sign in again.');
      return;
    }
    $('mfa-error').textContent = e.status === 429
      ? 'Too many attempts; wait a moment.'
      : factor.passkey ? passkeyProblem(e) : 'That code is wrong or was already used.';
  }
}

// Setting up the second factor.
$('mfa-setup').addEventListener('click', () => {
  $('mfa-enrol-form').hidden = false;
  $('mfa-codes').hidden = true;
});

$('mfa-enrol-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const password = new FormData(event.target).get('password');
  event.target.reset();
  let enrol;
  try {
    enrol = await lk.mfa.enrollTotp({ password });
  } catch (e) {
    status(e.status === 409 ? 'Two-step verification is already on.' : 'Wrong password.');
    return;
  }
  $('mfa-secret').textContent = enrol.secret;
  // As an image, never as markup inserted into the page.
  $('mfa-qr').src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(enrol.qr_svg);
  event.target.hidden = true;
  $('mfa-confirm-form').hidden = false;
  status('Scan the code, then enter the 6 digits your app shows.');
});

$('mfa-confirm-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const code = new FormData(event.target).get('code').trim();
  let codes;
  try {
    ({ recovery_codes: codes } = await lk.mfa.confirmTotp({ code }));
  } catch {
    $('mfa-confirm-error').textContent = 'That code is wrong; try the next one.';
    return;
  }
  event.target.reset();
  event.target.hidden = true;
  $('mfa-secret').textContent = '';
  $('mfa-qr').removeAttribute('src');
  $('recovery-codes').replaceChildren(...codes.map((c) => {
    const li = document.createElement('li');
    li.textContent = c;
    return li;
  }));
  $('mfa-codes').hidden = false;
  status('Two-step verification is on.');
});

$('refresh').addEventListener('click', () => refresh());
$('logout').addEventListener('click', () => lk.signOut().catch(() => signedOut()));

// Sign-up (POST /signup, docs/contract.md "Endpoints"): create the account, then sign in
// with the same name and password. The email address is optional; latchkey mails a link
// to verify it.
$('signup-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const username = form.get('username');
  const password = form.get('password');
  const email = form.get('email').trim();
  try {
    await lk.signUp({ username, password, ...(email ? { email } : {}) });
  } catch (e) {
    $('signup-error').textContent = e.status === 409 ? 'That name is taken; choose another.'
      : e.status === 403 ? 'Sign-up is closed on this server.'
        : e.status === 429 ? 'Too many attempts; wait a moment.'
          : (e.description || 'Please check what you typed.');
    return;
  }
  $('signup-error').textContent = '';
  event.target.reset();
  // Leave #signup without a hashchange (which would show the sign-in form first).
  history.replaceState(null, '', location.pathname + location.search);
  try {
    await signIn(username, password, true);
  } catch {
    signedOut('Your account is ready; please sign in.');
  }
});

// Account recovery (docs/contract.md "Email and account recovery"). Plain JSON calls:
// no cookie and no session are involved. The reset link is
// …/#reset-password&token=TOKEN (mail.reset_url); the token stays in the fragment, so it
// never reaches a server log or a Referer, and is removed from the address bar at once.
let resetToken = null;

function showLinkedPage() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has('reset-password') && params.get('token')) {
    resetToken = params.get('token');
    history.replaceState(null, '', location.pathname + location.search);
    $('login-form').hidden = true;
    $('forgot-form').hidden = true;
    $('signup-form').hidden = true;
    $('reset-form').hidden = false;
    status('Choose a new password.');
    return true;
  }
  if (location.hash === '#signup') {
    $('login-form').hidden = true;
    $('forgot-form').hidden = true;
    $('reset-form').hidden = true;
    $('signup-form').hidden = false;
    $('signup-error').textContent = '';
    status('Create an account.');
    return true;
  }
  if (location.hash === '#forgot') {
    $('login-form').hidden = true;
    $('reset-form').hidden = true;
    $('signup-form').hidden = true;
    $('forgot-form').hidden = false;
    $('forgot-result').textContent = '';
    status('Forgot password.');
    return true;
  }
  return false;
}

$('forgot-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const who = new FormData(event.target).get('who').trim();
  try {
    await lk.password.forgot(who.includes('@') ? { email: who } : { username: who });
    $('forgot-result').textContent = 'If that account has a verified email address, a link is on its way. Check your mail.';
  } catch (e) {
    $('forgot-result').textContent = e.status === 429 ? 'Too many requests; wait a moment.' : 'Please check what you typed.';
  }
});

$('reset-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const password = new FormData(event.target).get('new_password');
  try {
    await lk.password.reset({ token: resetToken, newPassword: password });
  } catch (e) {
    $('reset-result').textContent = e.code === 'invalid_grant'
      ? 'This link is invalid, used or expired. Ask for a new one.'
      : (e.description || 'The password was refused.');
    return;
  }
  resetToken = null;
  event.target.reset();
  unmark();
  signedOut('Your password has been changed and every session ended. Please sign in.');
});

window.addEventListener('hashchange', () => {
  if (!showLinkedPage() && !lk.session) signedOut('Please sign in.');
});

// For the end-to-end test (and the curious): trigger a refresh, read what the page knows.
window.latchkey = {
  refresh,
  signedIn: () => lk.session !== null,
  userId: () => lk.session?.userId,
  amr: () => lk.session?.amr ?? [],
};

// After a reload the access token is gone; the cookie (or another tab) brings the
// session back: `ready` resolves once the library knows.
const recovering = showLinkedPage();
lk.ready.then(() => {
  if (!recovering && !lk.session) signedOut('Please sign in.');
});
