// latchkey's sign-in page: the passkey button (docs/identity-providers-guide.md "Native
// apps"). Served from latchkey itself (CSP script-src 'self'); no other script runs on the
// page, and the page works without this one (the button stays hidden).
// The ceremony: POST /login/passkey/start (or /login/mfa/passkey/start for the second
// step), navigator.credentials.get (WebAuthn Level 3 §5.1.4), then the form posts the
// ceremony and the authenticator's answer to /oauth/authorize with its CSRF token.
(() => {
  const form = document.getElementById('passkey-form');
  const PKC = window.PublicKeyCredential;
  if (!form || !PKC || !navigator.credentials) return;
  const status = document.getElementById('passkey-status');
  const field = (name) => form.elements.namedItem(name);

  const toBytes = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
  const toB64url = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

  // Browsers before WebAuthn Level 3's JSON methods get the conversion by hand.
  function requestOptions(o) {
    if (PKC.parseRequestOptionsFromJSON) return PKC.parseRequestOptionsFromJSON(o);
    return {
      ...o,
      challenge: toBytes(o.challenge),
      allowCredentials: (o.allowCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) })),
    };
  }
  function credentialJSON(c) {
    if (typeof c.toJSON === 'function') return c.toJSON();
    const r = c.response;
    return {
      id: c.id, rawId: toB64url(c.rawId), type: c.type,
      clientExtensionResults: c.getClientExtensionResults(),
      authenticatorAttachment: c.authenticatorAttachment ?? undefined,
      response: {
        clientDataJSON: toB64url(r.clientDataJSON),
        authenticatorData: toB64url(r.authenticatorData),
        signature: toB64url(r.signature),
        userHandle: r.userHandle ? toB64url(r.userHandle) : undefined,
      },
    };
  }

  async function start() {
    const second = form.dataset.passkey === 'mfa';
    const body = second ? { mfa_token: field('mfa_token').value } : { client_id: field('client_id').value };
    const res = await fetch(second ? '/login/mfa/passkey/start' : '/login/passkey/start', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      credentials: 'omit',
    });
    if (!res.ok) throw new Error('start');
    return res.json();
  }

  form.hidden = false;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    status.textContent = 'Follow your browser to use your passkey…';
    try {
      const { ceremony, options } = await start();
      const credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
      field('passkey_ceremony').value = ceremony;
      field('passkey_credential').value = JSON.stringify(credentialJSON(credential));
      form.submit();
    } catch (e) {
      status.textContent = e && e.name === 'NotAllowedError'
        ? 'No passkey was used (cancelled or timed out).'
        : 'The passkey sign-in could not start. Try again, or use your password.';
    }
  });
})();
