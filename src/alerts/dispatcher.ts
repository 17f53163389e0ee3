import { backoffMs } from '../domain/backoff.js';
import type { Queue } from 'bullmq';
import { type AlertChangeRecord, NOTIFY_BACKOFF, type NotifyJob } from '../contracts/alert.js';
import { routeChange, type RoutingConfig } from '../domain/alert-routing.js';
import type { LineWriter } from '../shared/influx.js';
import { int, lp } from '../shared/line-protocol.js';
import type { Logger } from '../shared/logger.js';
import { AlertStore } from '../alerting/store.js';
import type { RedisClient } from '../shared/redis.js';

/**
 * Outbox → notify jobs. Alert changes are committed to the outbox stream in the same Lua call as the state, so a
 * crash can delay a notification but never lose it; jobs get deterministic ids (alert, version, change, webhook),
 * so re-dispatching an entry after a crash does not enqueue twice. Also writes each change to InfluxDB.
 */

export interface DispatcherOptions {
  group: string;
  consumer: string;
  attempts: number;
  backoffMs: number;
  maxBackoffMs: number;
  /** Entries a crashed consumer left pending are taken over after this long. */
  claimIdleMs: number;
  blockMs: number;
}

export function idempotencyKey(c: AlertChangeRecord): string {
  return `${c.alert.id}.${c.alert.version}.${c.kind}`;
}

/** The `alert` measurement: one point per change, at the change's time (event time for pipeline changes). */
export function alertLine(c: AlertChangeRecord): string {
  const a = c.alert;
  return lp(
    'alert',
    { type: a.type, severity: a.severity, subject: a.subject },
    {
      state: a.state,
      message: a.reason,
      count: int(a.count),
      alert_id: a.id,
      change: c.kind,
      flapping: a.flapping,
      customers_affected: a.outage ? int(a.outage.customersAffected) : undefined,
      critical_customers: a.outage ? int(a.outage.criticalCustomers.length) : undefined,
      duration_s: a.outage?.durationMs != null ? a.outage.durationMs / 1000 : undefined,
    },
    c.at,
  );
}

/** XREADGROUP / XAUTOCLAIM reply → [id, fields] pairs. */
function entriesOf(reply: unknown): Array<[string, string[]]> {
  const out: Array<[string, string[]]> = [];
  if (!Array.isArray(reply)) return out;
  const streams: unknown[] = reply;
  for (const stream of streams) {
    if (!Array.isArray(stream)) continue;
    const entries: unknown = stream[1];
    if (!Array.isArray(entries)) continue;
    const list: unknown[] = entries;
    for (const e of list) {
      if (!Array.isArray(e)) continue;
      const [id, fields]: unknown[] = e;
      if (typeof id === 'string' && Array.isArray(fields)) out.push([id, fields.map(String)]);
    }
  }
  return out;
}

/** Delay before retry `attemptsMade` of a notification: exponential from `backoffMs`, capped at `maxBackoffMs`. */
export function notifyBackoff(opts: { backoffMs: number; maxBackoffMs: number }): (attemptsMade: number) => number {
  return (attemptsMade) => backoffMs(Math.max(0, attemptsMade - 1), opts.backoffMs, opts.maxBackoffMs);
}

export class Dispatcher {
  private stopping = false;
  private loop: Promise<void> | undefined;
  private lastClaim = 0;
  dispatched = 0;

  constructor(
    /** A connection of its own: XREADGROUP blocks it. */
    private readonly redis: RedisClient,
    private readonly store: AlertStore,
    private readonly queue: Queue,
    private readonly routing: RoutingConfig,
    private readonly writer: LineWriter | null,
    private readonly log: Logger,
    private readonly opts: DispatcherOptions,
    private readonly clock: () => number = Date.now,
  ) {}

  async start(): Promise<void> {
    await this.store.ensureOutboxGroup(this.opts.group);
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      try {
        if (this.clock() - this.lastClaim >= this.opts.claimIdleMs / 2) {
          this.lastClaim = this.clock();
          await this.claimStale();
        }
        const reply: unknown = await this.redis.xreadgroup(
          'GROUP',
          this.opts.group,
          this.opts.consumer,
          'COUNT',
          200,
          'BLOCK',
          this.opts.blockMs,
          'STREAMS',
          this.store.keys.outbox,
          '>',
        );
        await this.handle(entriesOf(reply));
        failures = 0;
      } catch (err) {
        if (this.stopping) break;
        this.log.error({ err }, 'outbox dispatch failed, retrying');
        await new Promise((r) => setTimeout(r, backoffMs(failures++, 100, 5000)));
      }
    }
  }

  private async claimStale(): Promise<void> {
    let cursor = '0-0';
    for (let i = 0; i < 100; i++) {
      const res: unknown = await this.redis.xautoclaim(
        this.store.keys.outbox,
        this.opts.group,
        this.opts.consumer,
        this.opts.claimIdleMs,
        cursor,
        'COUNT',
        200,
      );
      if (!Array.isArray(res)) return;
      const next: unknown = res[0];
      await this.handle(entriesOf([[this.store.keys.outbox, res[1]]]));
      if (typeof next !== 'string' || next === '0-0') return;
      cursor = next;
    }
  }

  /** Enqueue, write the points, then acknowledge and delete the entries. */
  async handle(entries: Array<[string, string[]]>): Promise<void> {
    if (entries.length === 0) return;
    const changes: AlertChangeRecord[] = [];
    for (const [id, fields] of entries) {
      const raw = fields[fields.indexOf('c') + 1];
      const c = raw === undefined ? undefined : AlertStore.parseChange(raw);
      if (c === undefined) this.log.error({ entry: id }, 'malformed outbox entry dropped');
      else changes.push(c);
    }
    const now = this.clock();
    const jobs: Array<{ name: string; data: NotifyJob; opts: Record<string, unknown> }> = [];
    for (const c of changes) {
      const key = idempotencyKey(c);
      for (const d of routeChange(c.kind, c.notify, c.alert, now, this.routing)) {
        jobs.push({
          name: c.kind,
          data: { webhook: d.webhook, idempotencyKey: key, change: c.kind, at: c.at, alert: c.alert },
          opts: {
            jobId: `${key}.${d.webhook}`,
            priority: d.priority,
            ...(d.delayMs > 0 ? { delay: d.delayMs } : {}),
            attempts: this.opts.attempts,
            // Capped (the notify worker's backoffStrategy): a receiver down for minutes is retried every maxBackoffMs.
            backoff: { type: NOTIFY_BACKOFF, delay: this.opts.backoffMs },
            // Kept a day so a re-dispatch after a crash still finds the id and does not deliver twice.
            removeOnComplete: { age: 86_400, count: 100_000 },
            removeOnFail: { age: 7 * 86_400 },
          },
        });
      }
    }
    // Critical customers and severe alerts first, also within a batch.
    jobs.sort((a, b) => Number(a.opts.priority) - Number(b.opts.priority));
    if (jobs.length > 0) await this.queue.addBulk(jobs);
    this.writer?.write(changes.map(alertLine));
    const ids = entries.map(([id]) => id);
    await this.redis
      .multi()
      .xack(this.store.keys.outbox, this.opts.group, ...ids)
      .xdel(this.store.keys.outbox, ...ids)
      .exec();
    this.dispatched += jobs.length;
    for (const c of changes)
      this.log.info({ alertId: c.alert.id, key: c.alert.key, change: c.kind, severity: c.alert.severity, notify: c.notify }, 'alert change');
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
  }
}
