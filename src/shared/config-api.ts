import { isIP } from 'node:net';
import { derivedTokenId, parseTokenHash, type TokenHash, TokenHashError, tokenDigest } from './api-tokens.js';
import { type Env, int, optional, str } from './config-env.js';
import { ConfigError } from './errors.js';

/** The API's part of the environment: API_TOKENS and their scopes, limits, CORS and proxies. */

export const SCOPES = ['billing:read', 'alerts:write', 'meters:command', 'insights:read', 'dr:write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** One API_TOKENS entry. The token itself is never kept: a scrypt hash, or for a plain (development) token its SHA-256. */
export interface ApiToken {
  /** Named in config, or derived from the entry (`tok-…`): what logs and the audit log show. */
  readonly id: string;
  readonly scopes: ReadonlySet<Scope>;
  readonly secret: { readonly kind: 'scrypt'; readonly hash: TokenHash } | { readonly kind: 'plain'; readonly digest: Buffer };
}

export interface ApiConfig {
  readonly host: string;
  readonly port: number;
  readonly tokens: readonly ApiToken[];
  /** Requests per window: per token (after authentication) and per client address (before it, every route but the probes). */
  readonly rateLimit: { readonly perToken: number; readonly perAddress: number; readonly probesPerAddress: number; readonly windowMs: number };
  /** Request bodies: every route, and the registry imports. */
  readonly bodyLimit: number;
  readonly importBodyLimit: number;
  /** Allowed CORS origins; empty: no CORS headers at all. `*` allows any origin. */
  readonly corsOrigins: readonly string[];
  /** Proxies whose X-Forwarded-For is believed (addresses or CIDRs); empty: the socket address is the client's. */
  readonly trustProxy: readonly string[];
  /** Approximate length the `mf:audit` stream is capped at. */
  readonly auditMaxLen: number;
}

const TOKENS_SHAPE = 'a JSON object {"<token hash or plain token>": ["scope", …] or {"id": "<name>", "scopes": ["scope", …]}}';
const TOKEN_ID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * API_TOKENS: a JSON object; each key is a token hash (`meterflow token hash`) or, for development, a plain token,
 * and each value its scopes, or `{ "id": name, "scopes": […] }` to name it in logs and the audit log.
 */
export function parseTokens(raw: string | undefined): ApiToken[] {
  const tokens: ApiToken[] = [];
  if (raw === undefined || raw.trim() === '') return tokens;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    // The parser's message may quote the text, tokens included: only say that it did not parse.
    throw new ConfigError('API_TOKENS', `${TOKENS_SHAPE}, which did not parse`, { cause: err instanceof Error ? new Error(err.name) : undefined });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError('API_TOKENS', TOKENS_SHAPE);
  const ids = new Set<string>();
  for (const [key, value] of Object.entries(parsed)) {
    // Never echo the token itself: only its position.
    const where = `API_TOKENS (entry #${tokens.length + 1})`;
    let hash: TokenHash | undefined;
    try {
      hash = parseTokenHash(key);
    } catch (err) {
      if (err instanceof TokenHashError) throw new ConfigError(where, err.message);
      throw err;
    }
    if (hash === undefined && key.length < 8) throw new ConfigError(where, 'a token of at least 8 characters, or a token hash');
    let list: unknown = value;
    let id: string | undefined;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const extra = Object.keys(value).filter((k) => k !== 'id' && k !== 'scopes');
      if (extra.length > 0) throw new ConfigError(where, `only "id" and "scopes", got ${JSON.stringify(extra[0])}`);
      const named: { id?: unknown; scopes?: unknown } = value;
      if (named.id !== undefined && (typeof named.id !== 'string' || !TOKEN_ID_RE.test(named.id))) {
        throw new ConfigError(where, 'an "id" of 1–64 letters, digits, _ . : or -');
      }
      id = named.id;
      list = named.scopes;
    }
    if (!Array.isArray(list)) throw new ConfigError(where, `a list of scopes (${SCOPES.join(', ')})`);
    const scopes = new Set<Scope>();
    for (const s of list) {
      const scope = SCOPES.find((k) => k === s);
      if (scope === undefined) throw new ConfigError(where, `scopes from ${SCOPES.join(', ')}, got ${JSON.stringify(s)}`);
      scopes.add(scope);
    }
    id ??= derivedTokenId(key);
    if (ids.has(id)) throw new ConfigError(where, `a token id not used by another entry, got "${id}" twice`);
    ids.add(id);
    tokens.push({ id, scopes, secret: hash === undefined ? { kind: 'plain', digest: tokenDigest(key) } : { kind: 'scrypt', hash } });
  }
  return tokens;
}

/** API_CORS_ORIGINS: comma-separated origins (`https://ops.example.com`), or `*`. */
function corsOrigins(env: Env): string[] {
  const raw = optional(env, 'API_CORS_ORIGINS');
  if (raw === undefined) return [];
  const out: string[] = [];
  for (const item of raw.split(',').map((x) => x.trim())) {
    if (item === '') continue;
    if (item === '*') {
      out.push(item);
      continue;
    }
    let u: URL | undefined;
    try {
      u = new URL(item);
    } catch {
      u = undefined;
    }
    if (u === undefined || !['http:', 'https:'].includes(u.protocol) || u.origin !== item.replace(/\/$/, '')) {
      throw new ConfigError('API_CORS_ORIGINS', `comma-separated origins such as https://ops.example.com (scheme, host, port; no path) or *, got "${item}"`);
    }
    out.push(u.origin);
  }
  return out;
}

/** API_TRUST_PROXY: comma-separated IP addresses or CIDRs of the reverse proxies in front of the API. */
function trustProxy(env: Env): string[] {
  const raw = optional(env, 'API_TRUST_PROXY');
  if (raw === undefined) return [];
  const items = raw
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
  for (const item of items) {
    const [addr = '', bits, ...more] = item.split('/');
    const okBits = bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (isIP(addr) === 6 ? 128 : 32));
    if (isIP(addr) === 0 || !okBits || more.length > 0) throw new ConfigError('API_TRUST_PROXY', `comma-separated IP addresses or CIDRs, got "${item}"`);
  }
  return items;
}

export function apiConfig(env: Env): ApiConfig {
  return {
    host: str(env, 'API_HOST', '127.0.0.1'),
    port: int(env, 'API_PORT', 8080, 0, 65535),
    tokens: parseTokens(env.API_TOKENS),
    rateLimit: {
      perToken: int(env, 'API_RATE_LIMIT_TOKEN', 600, 1, 1_000_000),
      perAddress: int(env, 'API_RATE_LIMIT_ADDRESS', 1200, 1, 1_000_000),
      probesPerAddress: int(env, 'API_RATE_LIMIT_PROBES', 600, 1, 1_000_000),
      windowMs: int(env, 'API_RATE_WINDOW_S', 60, 1, 86_400) * 1000,
    },
    bodyLimit: int(env, 'API_BODY_LIMIT', 1024 * 1024, 1024, 1024 * 1024 * 1024),
    importBodyLimit: int(env, 'API_IMPORT_BODY_LIMIT', 16 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    corsOrigins: corsOrigins(env),
    trustProxy: trustProxy(env),
    auditMaxLen: int(env, 'API_AUDIT_MAXLEN', 100_000, 100, 100_000_000),
  };
}
