import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Scope } from '../shared/config.js';

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Bearer tokens with scopes; `admin` implies every scope. Tokens are held as SHA-256 digests only. */
export class TokenAuth {
  private readonly entries: Array<{ hash: Buffer; scopes: ReadonlySet<Scope> }>;
  constructor(tokens: ReadonlyMap<string, ReadonlySet<Scope>>) {
    this.entries = [...tokens].map(([t, scopes]) => ({ hash: digest(t), scopes }));
  }

  /** Scopes of the presented token, or undefined when it is unknown. Compared in constant time. */
  scopesOf(token: string): ReadonlySet<Scope> | undefined {
    const h = digest(token);
    let found: ReadonlySet<Scope> | undefined;
    for (const e of this.entries) if (timingSafeEqual(e.hash, h)) found = e.scopes;
    return found;
  }

  /** preHandler: 401 without or with an unknown token, 403 when the token lacks `scope`. `scope` undefined: any valid token. */
  require(scope?: Scope) {
    return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
      const header = req.headers.authorization;
      const m = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
      const token = m?.[1];
      if (token === undefined) {
        await reply.code(401).header('www-authenticate', 'Bearer').send({ statusCode: 401, error: 'Unauthorized', message: 'missing bearer token' });
        return reply;
      }
      const scopes = this.scopesOf(token);
      if (scopes === undefined) {
        await reply
          .code(401)
          .header('www-authenticate', 'Bearer error="invalid_token"')
          .send({ statusCode: 401, error: 'Unauthorized', message: 'unknown token' });
        return reply;
      }
      if (scope !== undefined && !scopes.has(scope) && !scopes.has('admin')) {
        await reply.code(403).send({ statusCode: 403, error: 'Forbidden', message: `token lacks scope ${scope}` });
        return reply;
      }
    };
  }
}
