// latchkey example SPA: browser mode (docs/contract.md "Browser mode").
// - The access token is kept in a variable, never in storage.
// - The refresh token is an HttpOnly cookie set by latchkey; this script never sees it.
// - Every /browser/* call sends credentials, the X-Latchkey-CSRF header and a JSON body.
// - A silent refresh runs 30 s before the access token expires and on every page load.
// The API base comes from ?api=…, else http://localhost:8080.
'use strict';

const API = new URLSearchParams(location.search).get('api') || 'http://localhost:8080';

let accessToken = null; // memory only
let refreshTimer = null;
let refreshInFlight = null;

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
    $('login-error').textContent = res.status === 429 ? 'Too many attempts; wait a moment.' : 'Wrong username or password.';
    return;
  }
  $('login-error').textContent = '';
  accept(await res.json());
  await showSignedIn();
});

$('refresh').addEventListener('click', () => refresh());
$('logout').addEventListener('click', async () => {
  await browserCall('/browser/logout');
  signedOut();
});

// For the end-to-end test (and the curious): trigger a refresh, read what the page knows.
window.latchkey = {
  refresh,
  signedIn: () => accessToken !== null,
};

// After a reload the access token is gone; the cookie brings the session back.
refresh().then((ok) => { if (!ok) signedOut('Please sign in.'); });
