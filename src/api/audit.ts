import { Type, type Static } from 'typebox';
import type { Logger } from '../shared/logger.js';
import type { RedisClient } from '../shared/redis.js';

/** The audit stream: one entry per authenticated write, capped (MAXLEN ~) at `API_AUDIT_MAXLEN`. */
export const AUDIT_STREAM = 'mf:audit';

export const AuditEntry = Type.Object({
  /** The stream entry id: the cursor for paging. */
  id: Type.String(),
  ts: Type.String({ description: 'When the answer went out, ISO-8601 UTC' }),
  tokenId: Type.String({ description: 'Id of the token used (never the token)' }),
  method: Type.String(),
  route: Type.String({ description: 'Route pattern, e.g. /api/v1/alerts/:id/ack' }),
  target: Type.Union([Type.String(), Type.Null()], { description: 'The id the write was about (alert, meter…), when the route names one' }),
  status: Type.Integer({ description: 'HTTP status answered' }),
  requestId: Type.String(),
  ip: Type.String(),
});
export type AuditEntry = Static<typeof AuditEntry>;
export type AuditRecord = Omit<AuditEntry, 'id'>;

const FIELDS = ['ts', 'tokenId', 'method', 'route', 'target', 'status', 'requestId', 'ip'] as const;

function fromFields(id: string, flat: string[]): AuditEntry | undefined {
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) f.set(flat[i] ?? '', flat[i + 1] ?? '');
  const status = Number(f.get('status'));
  const ts = f.get('ts');
  const tokenId = f.get('tokenId');
  const method = f.get('method');
  const route = f.get('route');
  if (ts === undefined || tokenId === undefined || method === undefined || route === undefined || !Number.isInteger(status)) return undefined;
  const target = f.get('target');
  return {
    id,
    ts,
    tokenId,
    method,
    route,
    target: target === undefined || target === '' ? null : target,
    status,
    requestId: f.get('requestId') ?? '',
    ip: f.get('ip') ?? '',
  };
}

/**
 * The audit log: a pino line (`audit: true`) and an entry in the capped `mf:audit` stream per write. Appends run
 * after the answer has gone out; `flush()` waits for them (the app's close does).
 */
export class AuditLog {
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly redis: RedisClient,
    private readonly log: Logger,
    private readonly maxLen: number,
  ) {}

  record(e: AuditRecord): void {
    this.log.info({ audit: true, ...e }, 'audit');
    const args = FIELDS.flatMap((k) => [k, String(e[k] ?? '')]);
    const p = this.redis
      .xadd(AUDIT_STREAM, 'MAXLEN', '~', String(this.maxLen), '*', ...args)
      .then(() => undefined)
      .catch((err: unknown) => this.log.error({ err, audit: true, requestId: e.requestId }, 'audit entry not stored'))
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  /** Waits for the appends in flight, at most `timeoutMs`. */
  async flush(timeoutMs = 5000): Promise<void> {
    if (this.pending.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([...this.pending]), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** Newest first; `before` is an entry id from a previous page (exclusive). */
  async list(limit: number, before?: string): Promise<{ items: AuditEntry[]; nextCursor: string | null }> {
    const end = before === undefined ? '+' : `(${before}`;
    const raw = await this.redis.xrevrange(AUDIT_STREAM, end, '-', 'COUNT', limit + 1);
    const items: AuditEntry[] = [];
    for (const [id, flat] of raw.slice(0, limit)) {
      const e = fromFields(id, flat);
      if (e !== undefined) items.push(e);
    }
    const last = raw[Math.min(limit, raw.length) - 1];
    return { items, nextCursor: raw.length > limit && last !== undefined ? last[0] : null };
  }
}
