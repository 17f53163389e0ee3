import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

/**
 * API bearer tokens at rest: `scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>` (salt and hash base64url). Only this
 * form belongs in a deployment's API_TOKENS; a plain token is still accepted for development.
 */
export const TOKEN_HASH_PREFIX = 'scrypt$';

export interface TokenHash {
  /** log2 of scrypt's N (cost). */
  readonly ln: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

/** What `meterflow token hash` writes: N = 2^14 costs about 50–100 ms, paid once per token and process (auth caches it). */
export const DEFAULT_TOKEN_COST = { ln: 14, r: 8, p: 1 } as const;

const HASH_BYTES = 32;
const SALT_BYTES = 16;
const HASH_RE = /^scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9_-]{22,88})\$([A-Za-z0-9_-]{43})$/;

/** A bad token hash; the message names what is wrong, never the value. */
export class TokenHashError extends Error {
  override name = 'TokenHashError';
}

const isHashSpec = (s: string): boolean => s.startsWith(TOKEN_HASH_PREFIX);

/** Parses a stored hash; undefined when `s` is not in the hash form at all, TokenHashError when it is malformed. */
export function parseTokenHash(s: string): TokenHash | undefined {
  if (!isHashSpec(s)) return undefined;
  const m = HASH_RE.exec(s);
  if (m === null) throw new TokenHashError('a token hash scrypt$ln=<n>,r=<r>,p=<p>$<salt>$<hash> (base64url), as `meterflow token hash` prints');
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // Bounds keep a config typo from asking scrypt for gigabytes per request.
  if (ln < 10 || ln > 16 || r < 1 || r > 16 || p < 1 || p > 4) throw new TokenHashError('scrypt parameters within ln 10–16, r 1–16, p 1–4');
  const salt = Buffer.from(m[4] ?? '', 'base64url');
  const hash = Buffer.from(m[5] ?? '', 'base64url');
  if (salt.length < SALT_BYTES || hash.length !== HASH_BYTES) throw new TokenHashError(`a salt of at least ${SALT_BYTES} bytes and a ${HASH_BYTES}-byte hash`);
  return { ln, r, p, salt, hash };
}

function derive(token: string, h: Pick<TokenHash, 'ln' | 'r' | 'p' | 'salt'>): Promise<Buffer> {
  const N = 2 ** h.ln;
  return new Promise((resolve, reject) => {
    // Runs on the libuv pool: the event loop keeps serving while a new token is checked.
    scrypt(token, h.salt, HASH_BYTES, { N, r: h.r, p: h.p, maxmem: 256 * N * h.r + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** The stored form of `token`, with a fresh random salt. */
export async function hashToken(token: string, cost: { ln: number; r: number; p: number } = DEFAULT_TOKEN_COST): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(token, { ...cost, salt });
  return `${TOKEN_HASH_PREFIX}ln=${cost.ln},r=${cost.r},p=${cost.p}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

/** Whether `token` matches the stored hash; the comparison takes the same time wherever the bytes differ. */
export async function verifyToken(token: string, stored: TokenHash): Promise<boolean> {
  const key = await derive(token, stored);
  return timingSafeEqual(key, stored.hash);
}

/** SHA-256 of a presented token: what plain tokens are compared by and what the verification cache is keyed by. */
export const tokenDigest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

/**
 * The id of a token entry with no name in config: a short digest of what config holds (the hash, or for a plain
 * token a domain-separated digest of it), stable across restarts and useless for recovering the token.
 */
export function derivedTokenId(spec: string): string {
  const h = createHash('sha256')
    .update(isHashSpec(spec) ? spec : `meterflow-token-id\0${spec}`, 'utf8')
    .digest('hex');
  return `tok-${h.slice(0, 12)}`;
}

/** A new random token: 32 bytes, URL- and shell-safe. */
export const newToken = (): string => `mf_${randomBytes(32).toString('base64url')}`;
