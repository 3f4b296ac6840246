// latchkey example SPA: browser mode (docs/contract.md "Browser mode").
// - The access token is kept in a variable, never in storage.
// - The refresh token is an HttpOnly cookie set by latchkey; this script never sees it.
// - Every /browser/* call sends credentials, the X-Latchkey-CSRF header and a JSON body.
// - A silent refresh runs 30 s before the access token expires and on every page load.
// - An account with a second factor answers the password with `mfa_required`; the page
//   asks for the code (or a recovery code) and finishes at /browser/login/mfa. The
//   `mfa_token` lives only in memory, like the access token.
// The API base comes from ?api=…, else http://localhost:8080.
'use strict';

const API = new URLSearchParams(location.search).get('api') || 'http://localhost:8080';

let accessToken = null; // memory only
let refreshTimer = null;
let refreshInFlight = null;
let mfaToken = null; // memory only: the pending login's token (5 minutes, single use)

const $ = (id) => document.getElementById(id);
const status = (text) => { $('status').textContent = text; };

async function browserCall(path, body) {
  return fetch(API + path, {
    method: 'POST',
    credentials: 'include',
    headers: { 'Content-Type': 'application/json', 'X-Latchkey-CSRF': '1' },
    body: JSON.stringify(body || {}),
  });
}

function accept(tokens) {
  accessToken = tokens.access_token;
  clearTimeout(refreshTimer);
  const inMs = Math.max(5, tokens.expires_in - 30) * 1000;
  refreshTimer = setTimeout(() => { refresh(); }, inMs);
}

function signedOut(message) {
  accessToken = null;
  clearTimeout(refreshTimer);
  $('signed-in').hidden = true;
  $('mfa-form').hidden = true;
  $('forgot-form').hidden = true;
  $('reset-form').hidden = true;
  $('login-form').hidden = false;
  status(message || 'Signed out.');
}

// Silent refresh; concurrent callers in this tab share one request.
async function refresh() {
  if (!refreshInFlight) {
    refreshInFlight = (async () => {
      try {
        const res = await browserCall('/browser/refresh');
        if (!res.ok) { signedOut('Your session has ended; please sign in.'); return false; }
        accept(await res.json());
        await showSignedIn();
        return true;
      } catch (e) {
        status('Network error: ' + e.message);
        return false;
      } finally {
        refreshInFlight = null;
      }
    })();
  }
  return refreshInFlight;
}

async function api(method, path) {
  const res = await fetch(API + path, { method, headers: { Authorization: 'Bearer ' + accessToken } });
  if (res.status === 401) { return (await refresh()) ? api(method, path) : null; }
  return res;
}

async function showSignedIn() {
  const me = await api('GET', '/me');
  if (!me || !me.ok) { return; }
  const user = await me.json();
  $('who').textContent = user.username;
  $('login-form').hidden = true;
  $('signed-in').hidden = false;
  status('Signed in.');
  await showSessions();
}

async function showSessions() {
  const res = await api('GET', '/me/sessions');
  if (!res || !res.ok) { return; }
  const sessions = await res.json();
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
      b.onclick = async () => { await api('DELETE', '/me/sessions/' + s.id); await showSessions(); };
      td.appendChild(b);
    }
    tr.appendChild(td);
    return tr;
  });
  $('sessions').replaceChildren(...rows);
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const res = await browserCall('/browser/login', {
    username: form.get('username'),
    password: form.get('password'),
    remember_me: form.get('remember_me') === 'on',
  });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    if (body.error === 'mfa_required') {
      // The password was right; the second step finishes the login.
      mfaToken = body.mfa_token;
      event.target.reset();
      $('login-error').textContent = '';
      $('login-form').hidden = true;
      $('mfa-error').textContent = '';
      $('mfa-form').hidden = false;
      status('Enter the code from your authenticator app.');
      return;
    }
    $('login-error').textContent = res.status === 429 ? 'Too many attempts; wait a moment.' : 'Wrong username or password.';
    return;
  }
  $('login-error').textContent = '';
  accept(await res.json());
  await showSignedIn();
});

// Six digits are an app's code; anything else is taken for a recovery code.
$('mfa-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const typed = new FormData(event.target).get('code').trim();
  const body = /^[0-9]{3} ?[0-9]{3}$/.test(typed)
    ? { mfa_token: mfaToken, code: typed }
    : { mfa_token: mfaToken, recovery_code: typed };
  const res = await browserCall('/browser/login/mfa', body);
  if (res.ok) {
    mfaToken = null;
    event.target.reset();
    $('mfa-form').hidden = true;
    accept(await res.json());
    await showSignedIn();
    return;
  }
  const err = await res.json().catch(() => ({}));
  if (err.error === 'invalid_grant') {
    // Expired, used, or too many wrong codes: start again with the password.
    mfaToken = null;
    signedOut('That sign-in has expired; please sign in again.');
    return;
  }
  $('mfa-error').textContent = res.status === 429
    ? 'Too many attempts; wait a moment.'
    : 'That code is wrong or was already used.';
});

// Setting up the second factor (Bearer calls with the in-memory access token).
async function apiJson(method, path, body) {
  return fetch(API + path, {
    method,
    headers: { Authorization: 'Bearer ' + accessToken, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
}

$('mfa-setup').addEventListener('click', () => {
  $('mfa-enrol-form').hidden = false;
  $('mfa-codes').hidden = true;
});

$('mfa-enrol-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const password = new FormData(event.target).get('password');
  const res = await apiJson('POST', '/me/mfa/totp', { password });
  event.target.reset();
  if (!res.ok) { status(res.status === 409 ? 'Two-step verification is already on.' : 'Wrong password.'); return; }
  const enrol = await res.json();
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
  const res = await apiJson('POST', '/me/mfa/totp/confirm', { code });
  if (!res.ok) { $('mfa-confirm-error').textContent = 'That code is wrong; try the next one.'; return; }
  const { recovery_codes: codes } = await res.json();
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
$('logout').addEventListener('click', async () => {
  await browserCall('/browser/logout');
  signedOut();
});

// Account recovery (docs/contract.md "Email and account recovery"). Plain JSON calls:
// no cookie and no session are involved. The reset link is
// …/#reset-password&token=TOKEN (mail.reset_url); the token stays in the fragment, so it
// never reaches a server log or a Referer, and is removed from the address bar at once.
let resetToken = null;

function showRecovery() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has('reset-password') && params.get('token')) {
    resetToken = params.get('token');
    history.replaceState(null, '', location.pathname + location.search);
    $('login-form').hidden = true;
    $('forgot-form').hidden = true;
    $('reset-form').hidden = false;
    status('Choose a new password.');
    return true;
  }
  if (location.hash === '#forgot') {
    $('login-form').hidden = true;
    $('reset-form').hidden = true;
    $('forgot-form').hidden = false;
    $('forgot-result').textContent = '';
    status('Forgot password.');
    return true;
  }
  return false;
}

async function jsonCall(path, body) {
  return fetch(API + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
}

$('forgot-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const who = new FormData(event.target).get('who').trim();
  const res = await jsonCall('/password/forgot', who.includes('@') ? { email: who } : { username: who });
  $('forgot-result').textContent = res.status === 202
    ? 'If that account has a verified email address, a link is on its way. Check your mail.'
    : res.status === 429 ? 'Too many requests; wait a moment.' : 'Please check what you typed.';
});

$('reset-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const password = new FormData(event.target).get('new_password');
  const res = await jsonCall('/password/reset', { token: resetToken, new_password: password });
  if (res.status === 204) {
    resetToken = null;
    event.target.reset();
    signedOut('Your password has been changed and every session ended. Please sign in.');
    return;
  }
  const body = await res.json().catch(() => ({}));
  $('reset-result').textContent = body.error === 'invalid_grant'
    ? 'This link is invalid, used or expired. Ask for a new one.'
    : (body.error_description || 'The password was refused.');
});

window.addEventListener('hashchange', () => {
  if (!showRecovery() && !accessToken) signedOut('Please sign in.');
});

// For the end-to-end test (and the curious): trigger a refresh, read what the page knows.
window.latchkey = {
  refresh,
  signedIn: () => accessToken !== null,
};

// After a reload the access token is gone; the cookie brings the session back.
if (!showRecovery()) {
  refresh().then((ok) => { if (!ok) signedOut('Please sign in.'); });
}
