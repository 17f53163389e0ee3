import { timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { tokenDigest, verifyToken } from '../shared/api-tokens.js';
import { ServiceError } from '../shared/errors.js';
import type { ApiToken, Scope } from '../shared/config-api.js';
import type { Limiter } from './rate-limit.js';
import { tooManyRequests } from './rate-limit.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The id of the token that authenticated the request (never the token); set by `TokenAuth.require`. */
    tokenId: string | undefined;
  }
}

/** The scopes of the token that authenticated a request (set by `TokenAuth.require`), for `GET /api/v1/whoami`. */
const grantedScopes = new WeakMap<FastifyRequest, ReadonlySet<Scope>>();

/** The scopes of the request's token; undefined when no token authenticated it. */
export function tokenScopes(req: FastifyRequest): ReadonlySet<Scope> | undefined {
  return grantedScopes.get(req);
}

/** Longest token worth checking: anything longer is refused before any hashing. */
const MAX_TOKEN_LENGTH = 512;

/** A Map in least-recently-used order, holding at most `max` entries. */
class Lru<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly max: number) {}
  get(k: string): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }
  set(k: string, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    if (this.map.size > this.max) {
      const oldest = this.map.keys().next();
      if (!oldest.done) this.map.delete(oldest.value);
    }
  }
  get size(): number {
    return this.map.size;
  }
}

/**
 * Bearer tokens with scopes; `admin` implies every scope. Config holds scrypt hashes (or, in development, plain
 * tokens, kept here as SHA-256 digests). A token presented for the first time is checked against every hash
 * (scrypt, on the libuv pool); the outcome is then cached under the token's SHA-256: known tokens in one LRU, which
 * can only ever hold the configured tokens, unknown ones in another, so wrong tokens can neither grow memory nor
 * evict a good token. Concurrent first checks of the same token share one verification.
 */
export class TokenAuth {
  private readonly known: Lru<ApiToken>;
  private readonly unknown: Lru<true>;
  private readonly checking = new Map<string, Promise<ApiToken | undefined>>();

  constructor(
    private readonly tokens: readonly ApiToken[],
    private readonly opts: { limiter?: Limiter; cacheSize?: number; maxChecking?: number } = {},
  ) {
    const size = opts.cacheSize ?? 1024;
    this.known = new Lru(Math.max(size, tokens.length));
    this.unknown = new Lru(size);
  }

  /** Cache sizes, for tests and metrics. */
  get cached(): { known: number; unknown: number } {
    return { known: this.known.size, unknown: this.unknown.size };
  }

  /** The entry the presented token belongs to, or undefined when it is unknown. */
  async identify(token: string): Promise<ApiToken | undefined> {
    if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) return undefined;
    const digest = tokenDigest(token);
    const key = digest.toString('base64url');
    const hit = this.known.get(key);
    if (hit !== undefined) return hit;
    if (this.unknown.get(key) !== undefined) return undefined;
    let pending = this.checking.get(key);
    if (pending === undefined) {
      // Each first check costs scrypt on the libuv pool (shared with file and DNS work): a flood of new tokens
      // beyond the per-address limits gets 503 rather than a queue that starves the process.
      if (this.checking.size >= (this.opts.maxChecking ?? 32)) throw new ServiceError('too many new API tokens being checked at once');
      pending = this.verify(token, digest).finally(() => this.checking.delete(key));
      this.checking.set(key, pending);
    }
    const found = await pending;
    if (found === undefined) this.unknown.set(key, true);
    else this.known.set(key, found);
    return found;
  }

  /** Every entry is compared, whichever matches: the time taken does not say which one did. */
  private async verify(token: string, digest: Buffer): Promise<ApiToken | undefined> {
    const results = await Promise.all(
      this.tokens.map(async (t) =>
        (t.secret.kind === 'plain' ? timingSafeEqual(t.secret.digest, digest) : await verifyToken(token, t.secret.hash)) ? t : undefined,
      ),
    );
    return results.find((t) => t !== undefined);
  }

  /**
   * preHandler: 401 without or with an unknown token, 429 when the token used up its rate limit, 403 when it lacks
   * `scope`. `scope` undefined: any valid token. Sets `req.tokenId` and binds it to `req.log`.
   */
  require(scope?: Scope) {
    return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
      const header = req.headers.authorization;
      const m = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
      const token = m?.[1];
      if (token === undefined) {
        await reply.code(401).header('www-authenticate', 'Bearer').send({ statusCode: 401, error: 'Unauthorized', message: 'missing bearer token' });
        return reply;
      }
      const entry = await this.identify(token);
      if (entry === undefined) {
        req.log.info({ ip: req.ip, route: req.routeOptions.url }, 'unknown API token refused');
        await reply
          .code(401)
          .header('www-authenticate', 'Bearer error="invalid_token"')
          .send({ statusCode: 401, error: 'Unauthorized', message: 'unknown token' });
        return reply;
      }
      req.tokenId = entry.id;
      grantedScopes.set(req, entry.scopes);
      req.log = req.log.child({ tokenId: entry.id });
      const wait = this.opts.limiter === undefined ? undefined : await this.opts.limiter(req);
      if (wait !== undefined) {
        await tooManyRequests(reply, wait);
        return reply;
      }
      if (scope !== undefined && !entry.scopes.has(scope) && !entry.scopes.has('admin')) {
        await reply.code(403).send({ statusCode: 403, error: 'Forbidden', message: `token lacks scope ${scope}` });
        return reply;
      }
    };
  }
}
