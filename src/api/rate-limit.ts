import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiConfig } from '../shared/config-api.js';

/** One counter: undefined when the request may go on, the seconds to wait when it may not. */
export type Limiter = (req: FastifyRequest) => Promise<number | undefined>;

export interface Limiters {
  /** Every request but the probes, per client address (IPv6 per /64), before authentication. */
  readonly address: Limiter;
  /** /healthz, /readyz, /metrics, per client address: probes and scrapers never compete with API clients. */
  readonly probes: Limiter;
  /** Per token id, after authentication: one busy client cannot starve the others behind the same address. */
  readonly token: Limiter;
}

/**
 * Fixed-window counters from @fastify/rate-limit, kept in this process (an LRU of 5,000 keys per counter): with
 * several API instances each one counts on its own. Counting does not touch Redis, so an outage there never
 * blocks routes that do not need it.
 */
export async function createLimiters(app: FastifyInstance, cfg: ApiConfig['rateLimit']): Promise<Limiters> {
  await app.register(rateLimit, { global: false });
  const make = (max: number, byToken: boolean): Limiter => {
    const check = app.createRateLimit({
      max,
      timeWindow: cfg.windowMs,
      // By address (the plugin's default key, IPv6 per /64), or by the id TokenAuth has just set.
      ...(byToken ? { keyGenerator: (req: FastifyRequest) => `token:${req.tokenId ?? ''}` } : {}),
    });
    return async (req) => {
      const r = await check(req);
      if (r.isAllowed || !r.isExceeded) return undefined;
      return Math.max(1, r.ttlInSeconds);
    };
  };
  return { address: make(cfg.perAddress, false), probes: make(cfg.probesPerAddress, false), token: make(cfg.perToken, true) };
}

/** 429 with Retry-After (seconds). */
export async function tooManyRequests(reply: FastifyReply, retryAfterS: number): Promise<FastifyReply> {
  return reply
    .code(429)
    .header('retry-after', String(retryAfterS))
    .send({ statusCode: 429, error: 'Too Many Requests', message: `rate limit exceeded, retry in ${retryAfterS} s` });
}
