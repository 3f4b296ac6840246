// The example SPA's identity providers (docs/identity-providers-guide.md): one "Sign in
// with …" button per provider latchkey lists (GET /identity-providers), and on the
// signed-in page the linked identities with "Unlink", and "Link …" for the others. Signing
// in and linking leave the page (top-level navigations to latchkey, then the provider);
// latchkey brings the browser back here with the refresh cookie set, or with #error=….

const $ = (id) => document.getElementById(id);

// What a provider's refusal means to the user (RFC 6749 §4.1.2.1 codes).
function providerProblem(e) {
  if (e.code === 'temporarily_unavailable') return 'The provider cannot be reached; try again later.';
  if (e.code === 'login_required') return 'Sign in first, then link the provider.';
  if (e.code === 'access_denied') return `Not signed in: ${e.description || 'the provider refused'}.`;
  return e.description || 'Signing in with the provider failed; try again.';
}

// `mark`/`unmark` keep app.js's signed-in marker cookie in step with the session. What
// was started is remembered for the return (sessionStorage: this tab only, no secret).
export function setUpProviders(lk, { mark, unmark }) {
  let providers = [];
  const PENDING = 'lk_provider_pending';
  const pending = sessionStorage.getItem(PENDING);
  sessionStorage.removeItem(PENDING);
  const linked = pending === 'link' && !lk.providerError;
  if (lk.providerError) {
    // A failed sign-in leaves no session, so no marker (no refresh to send); a failed link
    // leaves the session as it was.
    if (pending === 'signin') unmark();
    $('login-error').textContent = providerProblem(lk.providerError);
  }

  const button = (text, testid, onclick) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = text;
    b.dataset.testid = testid;
    b.onclick = onclick;
    return b;
  };

  const loaded = (async () => {
    try { providers = await lk.providers(); } catch { return; }
    $('providers').replaceChildren(...providers.map((p) => button(`Sign in with ${p.display_name}`,
      `signin-${p.id}`, () => {
        // Sessions from a provider are "keep me signed in" ones.
        mark(true);
        sessionStorage.setItem(PENDING, 'signin');
        lk.signInWithProvider(p.id);
      })));
  })();

  const say = (text) => { $('identity-status').textContent = text; };
  if (linked) say('The provider was linked: you can now sign in with it.');
  if (lk.providerError && pending === 'link') say(`Not linked: ${lk.providerError.description || lk.providerError.code}.`);

  async function showIdentities() {
    await loaded;
    let list;
    try { list = await lk.identities.list(); } catch { return; }
    $('identities').replaceChildren(...list.map((i) => {
      const li = document.createElement('li');
      li.textContent = `${i.display_name ?? i.provider}${i.email ? ` (${i.email})` : ''} `;
      const b = button('Unlink', `unlink-${i.provider}`, async () => {
        try {
          await lk.identities.unlink(i.id);
          say(`${i.display_name ?? i.provider} was unlinked.`);
        } catch (e) {
          say(e.status === 409 ? 'This is your only way to sign in: add a password or a passkey first.'
            : e.description || 'Unlinking failed; try again.');
        }
        await showIdentities();
      });
      b.setAttribute('aria-label', `Unlink ${i.display_name ?? i.provider}`);
      li.appendChild(b);
      return li;
    }));
    const held = new Set(list.map((i) => i.provider));
    $('link-providers').replaceChildren(...providers.filter((p) => !held.has(p.id)).map((p) =>
      button(`Link ${p.display_name}`, `link-${p.id}`, () => {
        sessionStorage.setItem(PENDING, 'link');
        lk.linkProvider(p.id);
      })));
  }

  return {
    showIdentities,
    clear: () => { $('identities').replaceChildren(); $('link-providers').replaceChildren(); say(''); },
  };
}
