// WebAuthn ceremonies for @latchkey/client (docs/contract.md "Passkeys (WebAuthn Level 3)").
//
// latchkey sends the options in their JSON form (WebAuthn Level 3 §5.1.7/§5.1.8: bytes as
// base64url strings) and takes the credential back in the same form (§5.1.10 toJSON).
// Browsers with `parseCreationOptionsFromJSON` / `parseRequestOptionsFromJSON` and
// `toJSON` do the conversion themselves; for the others (Safari before 18, Firefox before
// 119) a small base64url fallback converts exactly the byte fields the spec names.

type Json = Record<string, any>;

/** base64url (RFC 4648 §5, padding optional; "+/" accepted too) → bytes. */
export function fromB64url(s: string): ArrayBuffer {
  const b = s.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b + "===".slice((b.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
}

/** bytes → base64url without padding (RFC 4648 §5). */
export function toB64url(buf: ArrayBuffer | ArrayBufferView | null | undefined): string | undefined {
  if (!buf) return undefined;
  const u8 = buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  let bin = "";
  for (const b of u8) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const withIds = (list: Json[] | undefined) => list?.map((c) => ({ ...c, id: fromB64url(c.id) }));

/** PublicKeyCredentialCreationOptionsJSON → the options `navigator.credentials.create` takes. */
export function creationOptions(json: Json): CredentialCreationOptions["publicKey"] {
  const PKC: any = (globalThis as any).PublicKeyCredential;
  if (typeof PKC?.parseCreationOptionsFromJSON === "function") return PKC.parseCreationOptionsFromJSON(json);
  return {
    ...json,
    challenge: fromB64url(json.challenge),
    user: { ...json.user, id: fromB64url(json.user.id) },
    excludeCredentials: withIds(json.excludeCredentials),
  } as any;
}

/** PublicKeyCredentialRequestOptionsJSON → the options `navigator.credentials.get` takes. */
export function requestOptions(json: Json): CredentialRequestOptions["publicKey"] {
  const PKC: any = (globalThis as any).PublicKeyCredential;
  if (typeof PKC?.parseRequestOptionsFromJSON === "function") return PKC.parseRequestOptionsFromJSON(json);
  return { ...json, challenge: fromB64url(json.challenge), allowCredentials: withIds(json.allowCredentials) } as any;
}

/** A credential in its JSON form (RegistrationResponseJSON / AuthenticationResponseJSON). */
export function credentialJSON(cred: any): Json {
  if (typeof cred.toJSON === "function") return cred.toJSON();
  const r = cred.response;
  const response: Json = { clientDataJSON: toB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64url(r.attestationObject);
    response.transports = r.getTransports?.() ?? [];
  } else {
    response.authenticatorData = toB64url(r.authenticatorData);
    response.signature = toB64url(r.signature);
    if (r.userHandle) response.userHandle = toB64url(r.userHandle);
  }
  return {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment ?? undefined,
    clientExtensionResults: cred.getClientExtensionResults?.() ?? {},
    response,
  };
}

/** Whether this environment can run a passkey ceremony at all. */
export const passkeysSupported = () =>
  typeof (globalThis as any).PublicKeyCredential === "function" && !!(globalThis as any).navigator?.credentials;

const credentials = () => (globalThis as any).navigator.credentials as CredentialsContainer;

/** `navigator.credentials.create` with latchkey's creation options; the credential as JSON. */
export async function createCredential(options: Json): Promise<Json> {
  const cred = await credentials().create({ publicKey: creationOptions(options) });
  if (!cred) throw new DOMException("no credential was returned", "NotAllowedError");
  return credentialJSON(cred);
}

/** `navigator.credentials.get` with latchkey's request options; the assertion as JSON. */
export async function getCredential(options: Json): Promise<Json> {
  const cred = await credentials().get({ publicKey: requestOptions(options) });
  if (!cred) throw new DOMException("no credential was returned", "NotAllowedError");
  return credentialJSON(cred);
}
