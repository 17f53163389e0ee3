import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { Logger } from '../shared/logger.js';
import { Counter, metric } from '../shared/metrics.js';
import { AuditLog } from './audit.js';
import type { RedisClient } from '../shared/redis.js';

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const REFUSALS = new Set([401, 403, 429]);
/** Route parameters that name what a write is about, in the order looked for. */
const TARGET_PARAMS = ['id', 'meterId', 'period'] as const;

/** What the audit hook needs of the app's dependencies. */
export interface AuditDeps {
  redis: RedisClient;
  log: Logger;
  metrics: Registry;
}

function refusedCounter(metrics: Registry): Counter<'status'> {
  return metric(
    metrics,
    'meterflow_api_refused_total',
    () =>
      new Counter({
        name: 'meterflow_api_refused_total',
        help: 'API requests refused: 401 (no or unknown token), 403 (scope), 429 (rate limit)',
        labelNames: ['status'],
        registers: [metrics],
      }),
  );
}

/**
 * Every authenticated write, whatever its outcome, into the audit log (flushed when the app closes); refused
 * tokens are logged (not audited), so a flood of them cannot push real entries out of the capped stream.
 */
export function auditResponses(app: FastifyInstance, deps: AuditDeps, maxLen: number): AuditLog {
  const audit = new AuditLog(deps.redis, deps.log.child({ component: 'api-audit' }), maxLen);
  const refused = refusedCounter(deps.metrics);
  app.addHook('onResponse', async (req, reply) => {
    if (REFUSALS.has(reply.statusCode)) refused.inc({ status: String(reply.statusCode) });
    if (!WRITES.has(req.method) || req.tokenId === undefined) return;
    const params: Record<string, unknown> = req.params !== null && typeof req.params === 'object' ? { ...req.params } : {};
    const target = TARGET_PARAMS.map((k) => params[k]).find((v) => typeof v === 'string');
    audit.record({
      ts: new Date().toISOString(),
      tokenId: req.tokenId,
      method: req.method,
      route: req.routeOptions.url ?? req.url.split('?', 1)[0] ?? '',
      target: typeof target === 'string' ? target : null,
      status: reply.statusCode,
      requestId: req.id,
      ip: req.ip,
    });
  });
  app.addHook('onClose', () => audit.flush());
  return audit;
}
