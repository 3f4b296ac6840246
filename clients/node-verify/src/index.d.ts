// Types of @latchkey/verify (src/index.js).

/** Tokens longer than this are refused before any parsing. */
export declare const MAX_TOKEN_BYTES: 4096;

export type VerifyErrorCode = "invalid_token" | "revoked" | "feed_stale" | "insufficient_user_authentication";

export type InvalidReason =
  | "malformed"
  | "wrong_type"
  | "forbidden_header"
  | "unknown_key"
  | "invalid"
  | "expired"
  | "not_yet_valid"
  | "too_large";

/** Why a token was refused. */
export declare class VerifyError extends Error {
  readonly code: VerifyErrorCode;
  readonly reason: InvalidReason | "revoked" | "feed_stale" | "no_second_factor" | "auth_time_too_old";
  /** For `insufficient_user_authentication`: the `max_age` demanded, in seconds. */
  readonly maxAge?: number;
  /** 503 for `feed_stale`, else 401. */
  readonly status: 401 | 503;
  /** The `WWW-Authenticate` value to answer with (RFC 6750 §3, RFC 9470 §3). */
  readonly wwwAuthenticate: string;
}

/** The claims of a latchkey access token (RFC 9068 §2.2, plus `sid`, `scope`, `roles`). */
export interface Claims {
  iss: string;
  sub: string;
  aud: string | string[];
  client_id: string;
  iat: number;
  exp: number;
  nbf?: number;
  jti: string;
  /** The session: what the revocation feed lists. */
  sid: string;
  scope?: string;
  roles?: string[];
  auth_time?: number;
  amr?: string[];
  [claim: string]: unknown;
}

export interface VerifierOptions {
  /** The issuer URL, exactly as latchkey's metadata `issuer`. */
  issuer: string;
  /** Accepted audiences; a token must carry at least one. */
  audience: string | string[];
  /** latchkey `resource_servers` credentials, for the revocation feed. Without them the feed is off. */
  resourceServer?: { id: string; secret: string };
  /** How to follow the feed (default "stream"). */
  feed?: "stream" | "poll" | "off";
  /** Poll interval in ms for `feed: "poll"` (default 5,000). */
  pollInterval?: number;
  /** Refuse every token with `feed_stale` once the feed is silent longer than this, in ms (default 60,000). */
  maxStaleness?: number;
  /** What to do once the feed is stale (default "refuse"). */
  onStale?: "refuse" | "accept";
  /** Clock-skew allowance on exp/nbf/iat, in seconds (default 30). */
  leeway?: number;
  /** An unknown kid refetches the JWKS at most once per this many ms (default 10,000). */
  minRefetchInterval?: number;
  /** Where to read the RFC 8414 metadata, if not at the issuer. */
  metadataUrl?: string;
  /** The fetch to use (default: the global one). */
  fetch?: typeof globalThis.fetch;
}

export declare class Verifier {
  readonly issuer: string;
  readonly audiences: string[];
  /** Resolves to the claims, or rejects with a `VerifyError`. */
  verify(token: string): Promise<Claims>;
  /** `verify`, then RFC 9470 step-up. */
  verifyStepUp(token: string, options: { maxAge: number }): Promise<Claims>;
  /** Milliseconds since the feed was last heard from (0 without a feed). */
  feedStaleness(): number;
  isRevoked(sid: string): boolean;
  readonly revokedSessions: number;
  stats(): { jwksFetches: number; revokedSessions: number; feedStaleness: number };
  /** Stops the feed and the timers. */
  close(): void;
}

export declare function createVerifier(options: VerifierOptions): Promise<Verifier>;

/** RFC 9470 step-up: `otp` in `amr` and `auth_time` within `maxAge` seconds; throws `insufficient_user_authentication`. */
export declare function requireStepUp(claims: Claims, options: { maxAge: number }): Claims;

/** The RFC 9470 §3 `WWW-Authenticate` challenge. */
export declare function stepUpChallenge(options: { maxAge?: number }): string;

/** `max-age=N` from a Cache-Control value, in seconds. */
export declare function maxAge(cacheControl: string | null | undefined): number | undefined;

/** Status, headers and JSON body to answer a refused request with. */
export declare function refusal(err: unknown): {
  status: number;
  headers: Record<string, string>;
  body: { error: string; error_description: string };
};

/** The revoked sessions kept until their tokens cannot be accepted. */
export declare class RevokedSet {
  constructor(leewaySeconds: number, now?: () => number);
  horizon: number;
  insert(sid: string, revokedAt: number): void;
  has(sid: string): boolean;
  readonly size: number;
  prune(): void;
}

/** Express middleware: `req.auth` = the claims, or a 401/503 answer. */
export declare function expressMiddleware(
  verifier: Verifier,
  options?: { stepUp?: { maxAge: number } },
): (req: any, res: any, next: (err?: unknown) => void) => void;

/** Fastify plugin: decorates `authenticate`, `requireStepUp({maxAge})` and `request.auth`. */
export declare function fastifyPlugin(
  fastify: any,
  options: { verifier: Verifier; global?: boolean },
): Promise<void>;
