// @latchkey/client: sign-in, silent refresh and account calls for latchkey.
//
// Two modes (docs/contract.md "Browser mode", "Refresh rotation, reuse detection, revocation"):
// - "cookie" (SPAs): the /browser/* endpoints. The refresh token is an HttpOnly cookie this
//   code never sees; the access token lives in memory only. Tabs of one origin share one
//   refresh at a time (Web Locks) and the new access token (BroadcastChannel).
// - "token" (React Native, Electron, Node): /login and /oauth/token. The refresh token is
//   kept in a pluggable async `storage` (in memory by default). Never localStorage by
//   default: any script on the page (an XSS, a compromised dependency) can read
//   localStorage, and a refresh token read there is a long-lived session; in a browser use
//   cookie mode instead.
//
// Passkeys (WebAuthn Level 3): registration, passwordless sign-in and the second step of a
// password login; the JSON⇄binary conversion is in webauthn.ts.
//
// Only `invalid_grant` (RFC 6749 §5.2) ends a session. Network errors, 5xx, 429 and 503 are
// retried with backoff honouring Retry-After (RFC 9110 §10.2.3).

import { createCredential, getCredential, passkeysSupported } from "./webauthn.js";

export { fromB64url, toB64url, creationOptions, requestOptions, credentialJSON } from "./webauthn.js";

export type Mode = "cookie" | "token";

/** Where token mode keeps the refresh token (AsyncStorage, Keychain, a file…). */
export interface TokenStorage {
  getItem(key: string): Promise<string | null>;
  setItem(key: string, value: string): Promise<void>;
  removeItem(key: string): Promise<void>;
}

/** The default storage of token mode: a Map, gone when the process ends. */
export function memoryStorage(): TokenStorage {
  const m = new Map<string, string>();
  return {
    getItem: async (k) => m.get(k) ?? null,
    setItem: async (k, v) => void m.set(k, v),
    removeItem: async (k) => void m.delete(k),
  };
}

export interface ClientOptions {
  /** latchkey's base URL (its `issuer`), e.g. "https://auth.example.com". */
  issuer: string;
  /** The latchkey client id; omitted means the server's `default` client. */
  clientId?: string;
  mode: Mode;
  /** Token mode only: where the refresh token lives. Default: memory. */
  storage?: TokenStorage;
  /** Refresh this many seconds before the access token expires (default 30; at most a
   * quarter of the token's lifetime is used, so short lifetimes still work). */
  refreshLeeway?: number;
  /** How long a refresh keeps retrying through outages before `getAccessToken` gives
   * up with an error (the session is kept), in seconds. Default 60. */
  retryFor?: number;
  /** How long a tab waits for another tab's refresh (the Web Lock) before refreshing
   * itself, in milliseconds. Default 10000. */
  lockTimeout?: number;
  /** The fetch to use (default: globalThis.fetch). */
  fetch?: typeof fetch;
}

export interface Session {
  userId: string;
  sessionId: string;
  /** When the current access token expires, on this device's clock. */
  expiresAt: Date;
  amr: string[];
  authTime: Date | null;
}

export type AuthEvent =
  | "SIGNED_IN"
  | "TOKEN_REFRESHED"
  | "SIGNED_OUT"
  | "SESSION_ENDED"
  | "STEP_UP_REQUIRED";

/** Why a session ended: `reuse` (a rotated refresh token came back: theft, the whole
 * session was revoked), `revoked` (expired, revoked, logged out elsewhere, password
 * changed…), `other_client`, `invalid` (unknown token), or `unknown`. */
export type EndReason = "reuse" | "revoked" | "other_client" | "invalid" | "unknown";

export interface AuthChange {
  event: AuthEvent;
  session: Session | null;
  /** SESSION_ENDED: why. */
  reason?: EndReason;
  /** SESSION_ENDED: the server's error_description. STEP_UP_REQUIRED: the challenge. */
  detail?: string;
}

/** Every failed call: `code` is latchkey's `error` (e.g. invalid_credentials), or
 * `network_error` when no answer came. */
export class LatchkeyError extends Error {
  constructor(
    public code: string,
    public status: number,
    public description = "",
    public retryAfter?: number,
    public body?: unknown,
  ) {
    super(description ? `${code}: ${description}` : code);
    this.name = "LatchkeyError";
  }
}

export type SignInResult =
  | { status: "signed_in"; session: Session }
  | {
      status: "mfa_required";
      methods: string[];
      complete(factor: SecondFactor): Promise<SignInResult>;
    };

/** The second step: a TOTP code, a recovery code, or `{passkey: true}` to run a passkey
 * ceremony (when `methods` includes "passkey"). */
export type SecondFactor = { code: string } | { recoveryCode: string } | { passkey: true };

/** A passkey of the signed-in user (`GET /me/passkeys`). */
export interface Passkey {
  id: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
}

/** An identity provider latchkey offers (`GET /identity-providers`). */
export interface IdentityProvider {
  id: string;
  display_name: string;
}

/** An identity at a provider linked to the signed-in user (`GET /me/identities`). */
export interface Identity {
  id: string;
  provider: string;
  display_name: string | null;
  email: string | null;
  email_verified: boolean;
  created_at: string;
  last_login_at: string;
}

export interface SignInInput {
  username: string;
  password: string;
  rememberMe?: boolean;
}

type Tokens = { access_token: string; expires_in: number; refresh_token?: string };
type Msg =
  | { t: "hello" }
  | { t: "token"; access: string; until: number; signIn?: boolean }
  | { t: "out" }
  | { t: "ended"; reason: EndReason; detail: string };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function claims(jwt: string): Record<string, any> {
  try {
    const b = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b + "===".slice((b.length + 3) % 4));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
  } catch {
    return {};
  }
}

/** Maps an invalid_grant's error_description to a reason (docs/contract.md). */
export function endReason(description: string): EndReason {
  const d = description.toLowerCase();
  if (d.includes("reuse")) return "reuse";
  if (d.includes("another client")) return "other_client";
  if (d.includes("expired") || d.includes("revoked") || d.includes("ended")) return "revoked";
  if (d.includes("invalid") || d.includes("no refresh")) return "invalid";
  return "unknown";
}

export type LatchkeyClient = ReturnType<typeof createClient>;

export function createClient(options: ClientOptions) {
  const issuer = options.issuer.replace(/\/+$/, "");
  const clientId = options.clientId;
  const cookie = options.mode === "cookie";
  const storage = options.storage ?? memoryStorage();
  const leewayMs = (options.refreshLeeway ?? 30) * 1000;
  const retryForMs = (options.retryFor ?? 60) * 1000;
  const lockTimeout = options.lockTimeout ?? 10000;
  const doFetch: typeof fetch = options.fetch ?? ((i, n) => globalThis.fetch(i, n));
  const key = `latchkey:${issuer}:${clientId ?? "default"}`;
  const storageKey = key + ":refresh_token";
  const g: any = globalThis;
  const doc: Document | undefined = g.document;
  // Cross-tab coordination exists only in cookie mode in a browser: the cookie is shared
  // by the tabs, so they must take turns rotating it.
  const locks: LockManager | undefined = cookie ? g.navigator?.locks : undefined;
  const channel: BroadcastChannel | undefined =
    cookie && doc && g.BroadcastChannel ? new g.BroadcastChannel(key) : undefined;

  let access: string | null = null;
  let until = 0; // local-clock ms at which `access` expires
  let lifetime = 0;
  let session: Session | null = null;
  // False until the client knows whether there is a session (an outage at start leaves it
  // unknown: the next getAccessToken tries again).
  let known = false;
  let inflight: Promise<string | null> | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let wake: (() => void) | null = null;
  const listeners = new Set<(c: AuthChange) => void>();

  // A provider sign-in or link that failed comes back as return_to#error=…&
  // error_description=… (the fragment never reaches a server). Read once, then removed from
  // the address bar so that a reload or a shared link does not show it again.
  let providerError: LatchkeyError | null = null;
  const loc: Location | undefined = cookie && doc ? g.location : undefined;
  const answer = new URLSearchParams(loc?.hash.slice(1));
  if (loc && answer.get("error")) {
    providerError = new LatchkeyError(answer.get("error")!, 0, answer.get("error_description") ?? "");
    g.history?.replaceState(g.history.state, "", loc.pathname + loc.search);
  }

  const visible = () => !doc || doc.visibilityState !== "hidden";
  const leeway = () => Math.min(leewayMs, lifetime / 4);
  const fresh = () => access !== null && until - Date.now() > leeway();
  const valid = () => access !== null && until - Date.now() > 1000;

  function emit(event: AuthEvent, extra: Partial<AuthChange> = {}) {
    const change = { event, session, ...extra };
    for (const l of [...listeners]) {
      try {
        l(change);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  const post = (m: Msg) => channel?.postMessage(m);

  // Takes a token: `until` is on the local clock (the server's `expires_in` counted from
  // when the request was sent, so a skewed device clock does not matter).
  function take(token: string, localUntil: number) {
    const c = claims(token);
    known = true;
    access = token;
    until = localUntil;
    lifetime = c.exp && c.iat ? (c.exp - c.iat) * 1000 : localUntil - Date.now();
    session = {
      userId: c.sub,
      sessionId: c.sid,
      expiresAt: new Date(localUntil),
      amr: c.amr ?? [],
      authTime: c.auth_time ? new Date(c.auth_time * 1000) : null,
    };
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    if (!access) return;
    // A little jitter so that tabs woken together do not all queue for the lock.
    const at = until - leeway() - Date.now() - Math.random() * 300;
    timer = setTimeout(() => {
      if (visible()) refresh().catch(() => {});
    }, Math.max(0, at));
    // In Node the refresh timer alone does not keep the process alive.
    (timer as any).unref?.();
  }

  function clear() {
    clearTimeout(timer);
    known = true;
    access = null;
    until = 0;
    session = null;
  }

  async function ended(reason: EndReason, detail: string, tell: boolean) {
    const had = session !== null || access !== null;
    clear();
    if (!cookie) await storage.removeItem(storageKey);
    if (tell && had) post({ t: "ended", reason, detail });
    if (had) emit("SESSION_ENDED", { reason, detail });
  }

  channel?.addEventListener("message", (e: MessageEvent<Msg>) => {
    const m = e.data;
    if (m.t === "hello") {
      if (valid()) post({ t: "token", access: access!, until });
    } else if (m.t === "token") {
      if (m.until > until) {
        const was = session;
        take(m.access, m.until);
        if (!was || m.signIn) emit("SIGNED_IN");
        else emit("TOKEN_REFRESHED");
      }
    } else if (m.t === "out") {
      if (session) {
        clear();
        emit("SIGNED_OUT");
      }
    } else if (m.t === "ended") {
      ended(m.reason, m.detail, false);
    }
  });

  if (doc) {
    doc.addEventListener("visibilitychange", () => {
      if (visible() && session && !fresh()) refresh().catch(() => {});
    });
    g.addEventListener?.("online", () => {
      wake?.();
      if (visible() && session && !fresh()) refresh().catch(() => {});
    });
  }

  // --- HTTP ---------------------------------------------------------------------------

  async function call(
    method: string,
    path: string,
    body?: unknown,
    opts: { bearer?: string; browser?: boolean; form?: boolean } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = {};
    let payload: string | undefined;
    if (opts.form) {
      headers["Content-Type"] = "application/x-www-form-urlencoded";
      payload = new URLSearchParams(body as Record<string, string>).toString();
    } else if (body !== undefined || opts.browser) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body ?? {});
    }
    if (opts.browser) headers["X-Latchkey-CSRF"] = "1";
    if (opts.bearer) headers.Authorization = "Bearer " + opts.bearer;
    try {
      return await doFetch(issuer + path, {
        method,
        headers,
        body: payload,
        credentials: opts.browser ? "include" : "omit",
      });
    } catch (e) {
      throw new LatchkeyError("network_error", 0, String((e as Error)?.message ?? e));
    }
  }

  async function fail(res: Response): Promise<LatchkeyError> {
    const body: any = await res.json().catch(() => ({}));
    const ra = Number(res.headers.get("Retry-After"));
    return new LatchkeyError(
      body.error ?? "http_" + res.status,
      res.status,
      body.error_description ?? "",
      Number.isFinite(ra) && res.headers.has("Retry-After") ? ra : undefined,
      body,
    );
  }

  async function json<T>(res: Response): Promise<T> {
    if (!res.ok) throw await fail(res);
    return res.status === 204 || res.status === 202
      ? (undefined as T)
      : ((await res.json().catch(() => undefined)) as T);
  }

  // Accepts a token response: stores the refresh token (token mode), keeps the access
  // token, tells the other tabs.
  async function accept(tokens: Tokens, sentAt: number, signIn: boolean) {
    if (!cookie && tokens.refresh_token) await storage.setItem(storageKey, tokens.refresh_token);
    const was = session;
    take(tokens.access_token, sentAt + tokens.expires_in * 1000);
    post({ t: "token", access, until, signIn } as Msg);
    emit(!was || signIn ? "SIGNED_IN" : "TOKEN_REFRESHED");
    return session!;
  }

  // --- refresh ------------------------------------------------------------------------

  // One attempt loop: retries network errors, 5xx and 429 with backoff (Retry-After when
  // given) until `retryFor` has passed; invalid_grant ends the session.
  async function rotate(): Promise<string | null> {
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      let err: LatchkeyError;
      let rt: string | null = null;
      if (!cookie) {
        rt = await storage.getItem(storageKey);
        if (!rt) {
          await ended("invalid", "no refresh token is stored", false);
          return null;
        }
      }
      const sentAt = Date.now();
      try {
        const res = cookie
          ? await call("POST", "/browser/refresh", clientId ? { client_id: clientId } : {}, {
              browser: true,
            })
          : await call(
              "POST",
              "/oauth/token",
              {
                grant_type: "refresh_token",
                refresh_token: rt!,
                ...(clientId ? { client_id: clientId } : {}),
              },
              { form: true },
            );
        if (res.ok) {
          await accept(await res.json(), sentAt, false);
          return access;
        }
        err = await fail(res);
      } catch (e) {
        if (!(e instanceof LatchkeyError)) throw e;
        err = e;
      }
      if (err.code === "invalid_grant") {
        await ended(endReason(err.description), err.description, true);
        return null;
      }
      const retryable = err.status === 0 || err.status === 429 || err.status >= 500;
      const delay =
        err.retryAfter !== undefined
          ? err.retryAfter * 1000
          : Math.min(8000, 250 * 2 ** attempt) * (0.75 + Math.random() / 2);
      if (!retryable || Date.now() + delay - started > retryForMs) throw err;
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, delay);
      });
      wake = null;
    }
  }

  // One refresh at a time: in this process (a shared promise) and, in cookie mode, across
  // the origin's tabs (a Web Lock; whoever gets it second finds the token the first one
  // broadcast and does not refresh again). A lock that is not granted within
  // `lockTimeout` is given up: the server's reuse interval answers a concurrent refresh
  // of the same token with the same head, so refreshing without it is safe.
  function refresh(force = false): Promise<string | null> {
    if (inflight) return inflight;
    const stamp = until;
    const run = async () => {
      // Someone refreshed while we waited for the lock: take theirs.
      if (until > stamp && valid() && (fresh() || !force)) return access;
      const token = await rotate();
      // Hold the lock a moment so the other tabs receive the broadcast before they get it.
      if (locks) await sleep(30);
      return token;
    };
    inflight = (async () => {
      try {
        if (!locks) return await run();
        const ctl = new AbortController();
        const t = setTimeout(() => ctl.abort(), lockTimeout);
        try {
          return await locks.request(key, { signal: ctl.signal }, run);
        } catch (e) {
          if ((e as Error)?.name === "AbortError") return await run();
          throw e;
        } finally {
          clearTimeout(t);
        }
      } finally {
        inflight = null;
      }
    })();
    return inflight;
  }

  /** A valid access token, or null when signed out. Refreshes within `refreshLeeway` of
   * expiry; a token that is still valid is returned at once while the refresh runs. */
  async function getAccessToken(): Promise<string | null> {
    await ready;
    if (fresh()) return access;
    if (valid()) {
      // Ahead of expiry, only a visible tab refreshes.
      if (visible()) refresh().catch(() => {});
      return access;
    }
    if (known && !session) return null;
    if (!cookie && !(await storage.getItem(storageKey))) return null;
    return refresh();
  }

  // Start-up: a tab asks the others for their token; otherwise the cookie (or the stored
  // refresh token) brings the session back.
  const ready: Promise<void> = (async () => {
    await Promise.resolve();
    if (cookie) {
      if (!doc) return;
      if (channel) {
        post({ t: "hello" });
        await sleep(100);
        if (valid()) return;
      }
    } else if (!(await storage.getItem(storageKey))) return;
    try {
      await refresh();
    } catch {
      // An outage at start: stay signed out for now; the next call tries again.
    }
  })();

  function finishSignIn(res: Response, sentAt: number, browser: boolean): Promise<SignInResult> {
    return (async () => {
      if (res.ok) return { status: "signed_in", session: await accept(await res.json(), sentAt, true) };
      const err = await fail(res);
      const b: any = err.body;
      if (err.code === "mfa_required" && b?.mfa_token) {
        return {
          status: "mfa_required",
          methods: b.mfa_methods ?? ["totp", "recovery_code"],
          complete: async (f: SecondFactor) => {
            const body: Record<string, unknown> = { mfa_token: b.mfa_token };
            if ("code" in f) body.code = f.code;
            else if ("recoveryCode" in f) body.recovery_code = f.recoveryCode;
            else {
              // One start per attempt: a ceremony is single use (docs/contract.md "Passkeys").
              const s = await open("/login/mfa/passkey/start", { mfa_token: b.mfa_token });
              body.ceremony = s.ceremony;
              body.credential = await ceremony("get", s.options);
            }
            const at = Date.now();
            return finishSignIn(
              await call("POST", browser ? "/browser/login/mfa" : "/login/mfa", body, { browser }),
              at,
              browser,
            );
          },
        };
      }
      throw err;
    })();
  }

  /** Bearer fetch: the access token attached; on 401 invalid_token one refresh and one
   * retry; a 401 asking for a stronger authentication emits STEP_UP_REQUIRED. */
  async function authFetch(input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
    const send = (token: string | null) => {
      const headers = new Headers(init.headers);
      if (token) headers.set("Authorization", "Bearer " + token);
      return doFetch(input, { ...init, headers });
    };
    let res = await send(await getAccessToken());
    const challenge = () => res.headers.get("WWW-Authenticate") ?? "";
    if (res.status === 401 && challenge().includes("invalid_token")) {
      const token = await refresh(true);
      if (token) res = await send(token);
    }
    if (res.status === 401 && challenge().includes("insufficient_user_authentication")) {
      emit("STEP_UP_REQUIRED", { detail: challenge() });
    }
    return res;
  }

  const me = (method: string, path: string, body?: unknown) =>
    authFetch(issuer + path, {
      method,
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(json<any>);
  const open = (path: string, body: unknown) => call("POST", path, body).then(json<any>);

  // One WebAuthn ceremony in the browser. Its refusals (the user cancelled, the dialog
  // timed out, the authenticator already holds a passkey for this account) reject with a
  // LatchkeyError of status 0, as a network error does: `passkey_not_allowed`,
  // `passkey_exists`, `passkey_unsupported` or `passkey_error`.
  async function ceremony(kind: "create" | "get", options: any): Promise<unknown> {
    if (!passkeysSupported()) throw new LatchkeyError("passkey_unsupported", 0, "WebAuthn is not available here");
    try {
      return await (kind === "create" ? createCredential(options) : getCredential(options));
    } catch (e) {
      const name = (e as Error)?.name;
      const code =
        name === "NotAllowedError" ? "passkey_not_allowed" : name === "InvalidStateError" ? "passkey_exists" : "passkey_error";
      throw new LatchkeyError(code, 0, String((e as Error)?.message ?? e));
    }
  }

  // GET /browser/federate/{id}: a top-level navigation, so the provider's pages and the
  // callback's cookies are first-party (docs/identity-providers-guide.md).
  function federateUrl(id: string, returnTo?: string, link = false): string {
    const q = new URLSearchParams({
      ...(clientId ? { client_id: clientId } : {}),
      return_to: returnTo ?? (loc ? loc.href.split("#")[0] : ""),
      ...(link ? { link: "true" } : {}),
    });
    return `${issuer}/browser/federate/${encodeURIComponent(id)}?${q}`;
  }

  return {
    /** Resolves once the client knows whether a session exists (cookie or storage). */
    ready,
    get session(): Session | null {
      return session;
    },
    onAuthStateChange(cb: (change: AuthChange) => void): () => void {
      listeners.add(cb);
      return () => listeners.delete(cb);
    },
    signUp: (input: { username: string; password: string; email?: string }) =>
      open("/signup", input) as Promise<{ id: string; username: string; created_at: string }>,
    async signIn(input: SignInInput): Promise<SignInResult> {
      const sentAt = Date.now();
      const body = {
        username: input.username,
        password: input.password,
        remember_me: input.rememberMe ?? true,
        ...(clientId ? { client_id: clientId } : {}),
      };
      return finishSignIn(
        await call("POST", cookie ? "/browser/login" : "/login", body, { browser: cookie }),
        sentAt,
        cookie,
      );
    },
    /** Passwordless sign-in with a discoverable passkey: nothing names the user first. Cookie
     * mode uses /browser/login/passkey/*, token mode /login/passkey/*. */
    async signInWithPasskey({ rememberMe = true }: { rememberMe?: boolean } = {}): Promise<SignInResult> {
      const base = cookie ? "/browser/login/passkey/" : "/login/passkey/";
      const cid = clientId ? { client_id: clientId } : {};
      const s = await json<any>(await call("POST", base + "start", cid, { browser: cookie }));
      const credential = await ceremony("get", s.options);
      const sentAt = Date.now();
      const body = { ceremony: s.ceremony, credential, remember_me: rememberMe, ...cid };
      return finishSignIn(await call("POST", base + "finish", body, { browser: cookie }), sentAt, cookie);
    },
    /** The identity providers to offer, for "Sign in with …" buttons. */
    providers: () =>
      call("GET", "/identity-providers")
        .then(json<any>)
        .then((b) => b.identity_providers as IdentityProvider[]),
    /** Cookie mode: leaves the page for the provider; latchkey brings the browser back to
     * `returnTo` (default: this page; on one of the client's allowed origins) with the
     * refresh cookie set, and `ready` picks the session up; a failure comes back as
     * `providerError`. */
    signInWithProvider(id: string, { returnTo }: { returnTo?: string } = {}): void {
      g.location.assign(federateUrl(id, returnTo));
    },
    /** Cookie mode, signed in: links the provider's identity to this account (no new
     * session); back at `returnTo`, `identities.list()` shows it, or `providerError` why not. */
    linkProvider(id: string, { returnTo }: { returnTo?: string } = {}): void {
      g.location.assign(federateUrl(id, returnTo, true));
    },
    /** The provider sign-in's (or link's) failure this page was loaded with: `code` is the
     * RFC 6749 §4.1.2.1 error (`access_denied`, `temporarily_unavailable`, `login_required`…). */
    get providerError(): LatchkeyError | null {
      return providerError;
    },
    federateUrl,
    /** "this" (default) ends this session, "others" every other one of the user's,
     * "all" every one. Signing out reaches every tab. */
    async signOut({ scope = "this" }: { scope?: "this" | "others" | "all" } = {}) {
      if (scope !== "this") {
        const token = await getAccessToken();
        if (token) {
          await json(
            await call("POST", "/logout", { scope: scope === "all" ? "global" : "others" }, { bearer: token }),
          );
        }
        if (scope === "others") return;
      }
      try {
        if (cookie) await call("POST", "/browser/logout", {}, { browser: true });
        else {
          const rt = await storage.getItem(storageKey);
          if (rt) {
            await call(
              "POST",
              "/oauth/revoke",
              { token: rt, token_type_hint: "refresh_token", ...(clientId ? { client_id: clientId } : {}) },
              { form: true },
            );
          }
        }
      } finally {
        clear();
        if (!cookie) await storage.removeItem(storageKey);
        post({ t: "out" });
        emit("SIGNED_OUT");
      }
    },
    getAccessToken,
    /** Forces a refresh now (shared with any refresh in flight). */
    refresh: () => refresh(true),
    fetch: authFetch,
    me: () => me("GET", "/me"),
    sessions: {
      list: () => me("GET", "/me/sessions"),
      revoke: (id: string) => me("DELETE", "/me/sessions/" + encodeURIComponent(id)),
    },
    identities: {
      list: () => me("GET", "/me/identities").then((b) => b.identities as Identity[]),
      /** Refused (409 conflict) when it is the account's last way to sign in. */
      unlink: (id: string) => me("DELETE", "/me/identities/" + encodeURIComponent(id)),
    },
    changePassword: (p: { currentPassword: string; newPassword: string }) =>
      me("POST", "/me/password", { current_password: p.currentPassword, new_password: p.newPassword }),
    mfa: {
      enrollTotp: (p: { password: string }) =>
        me("POST", "/me/mfa/totp", p) as Promise<{ secret: string; otpauth_uri: string; qr_svg: string }>,
      confirmTotp: (p: { code: string }) =>
        me("POST", "/me/mfa/totp/confirm", p) as Promise<{ recovery_codes: string[] }>,
      removeTotp: (p: { password: string; code: string }) => me("DELETE", "/me/mfa/totp", p),
      regenerateRecoveryCodes: (p: { code: string }) =>
        me("POST", "/me/mfa/recovery-codes", p) as Promise<{ recovery_codes: string[] }>,
    },
    passkeys: {
      /** Whether this browser can create and use passkeys. */
      supported: passkeysSupported,
      /** Registers a passkey on this device (a step-up call once the user has a factor). */
      async add({ name }: { name?: string } = {}): Promise<Passkey> {
        const s = await me("POST", "/me/passkeys/register/start");
        const credential = await ceremony("create", s.options);
        return me("POST", "/me/passkeys/register/finish", { ceremony: s.ceremony, credential, ...(name ? { name } : {}) });
      },
      list: () => me("GET", "/me/passkeys") as Promise<Passkey[]>,
      rename: (id: string, name: string) => me("PATCH", "/me/passkeys/" + encodeURIComponent(id), { name }),
      /** A step-up call: removing a passkey needs a fresh second factor. */
      remove: (id: string) => me("DELETE", "/me/passkeys/" + encodeURIComponent(id)),
    },
    password: {
      forgot: (p: { username: string } | { email: string }) => open("/password/forgot", p),
      reset: (p: { token: string; newPassword: string }) =>
        open("/password/reset", { token: p.token, new_password: p.newPassword }),
    },
    email: {
      set: (p: { email: string; password: string }) => me("POST", "/me/email", p),
      verify: (p: { token: string }) => open("/email/verify", p),
    },
    /** Stops timers and closes the tab channel. */
    close() {
      clearTimeout(timer);
      channel?.close();
    },
  };
}
