// The example SPA's passkey pages (docs/contract.md "Passkeys (WebAuthn Level 3)",
// docs/spa-guide.md): "Sign in with a passkey" on the sign-in form, and the list with
// "Add a passkey" and "Remove" on the signed-in page. The ceremonies themselves
// (navigator.credentials and the JSON conversion) are @latchkey/client's.

const $ = (id) => document.getElementById(id);

// What a failed passkey call means to the user. Adding a second passkey and removing one
// are step-up calls (RFC 9470): a session opened with the password alone is refused.
export function passkeyProblem(e) {
  if (e.code === 'insufficient_user_authentication') {
    return 'This needs a fresh sign-in with your passkey or code: sign out, sign in again, then retry.';
  }
  if (e.code === 'passkey_not_allowed') return 'No passkey was used (cancelled or timed out).';
  if (e.code === 'passkey_exists') return 'This device already holds a passkey for this account.';
  if (e.code === 'passkey_unsupported') return 'This browser cannot use passkeys.';
  if (e.status === 429) return 'Too many attempts; wait a moment.';
  if (e.code === 'invalid_grant') return 'That passkey was not accepted; try again.';
  return e.description || 'Something went wrong; try again.';
}

// `mark`/`unmark` keep app.js's signed-in marker cookie in step with the session.
export function setUpPasskeys(lk, { mark, unmark }) {
  const supported = lk.passkeys.supported();
  $('passkey-login').hidden = !supported;
  $('passkey-add-form').hidden = !supported;

  // Discoverable credentials: the browser offers this site's passkeys, so no username is
  // asked for and none is sent (nothing to enumerate). SIGNED_IN shows the page.
  $('passkey-login').addEventListener('click', async () => {
    const rememberMe = $('login-form').elements.remember_me.checked;
    mark(rememberMe);
    try {
      await lk.signInWithPasskey({ rememberMe });
      $('login-error').textContent = '';
    } catch (e) {
      if (!lk.session) unmark();
      $('login-error').textContent = passkeyProblem(e);
    }
  });

  const say = (text) => { $('passkey-status').textContent = text; };

  async function showPasskeys() {
    let list;
    try { list = await lk.passkeys.list(); } catch { return; }
    $('passkeys').replaceChildren(...list.map((p) => {
      const li = document.createElement('li');
      const used = p.last_used_at ? `last used ${new Date(p.last_used_at).toLocaleString()}` : 'not used yet';
      li.textContent = `${p.name} (added ${new Date(p.created_at).toLocaleDateString()}, ${used}) `;
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = 'Remove';
      b.setAttribute('aria-label', `Remove the passkey ${p.name}`);
      b.onclick = async () => {
        try {
          await lk.passkeys.remove(p.id);
          say(`The passkey ${p.name} was removed.`);
        } catch (e) {
          say(passkeyProblem(e));
        }
        await showPasskeys();
      };
      li.appendChild(b);
      return li;
    }));
  }

  $('passkey-add-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = new FormData(event.target).get('name').trim();
    say('Follow your browser to create the passkey…');
    try {
      const added = await lk.passkeys.add(name ? { name } : {});
      event.target.reset();
      say(`The passkey ${added.name} was added: you can now sign in with it.`);
    } catch (e) {
      say(passkeyProblem(e));
    }
    await showPasskeys();
  });

  return { showPasskeys, clear: () => { $('passkeys').replaceChildren(); say(''); } };
}
