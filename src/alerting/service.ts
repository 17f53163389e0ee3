import type { AlertChangeRecord, AlertRecord } from '../contracts/alert.js';
import type { DetectionEvent } from '../contracts/events.js';
import {
  alertsOnly,
  applyEvent,
  applyOperator,
  isExpired,
  planEvent,
  sweepAlert,
  type EngineConfig,
  type EngineResult,
  type OperatorAction,
} from '../domain/alert-engine.js';
import { dueTimes } from '../domain/alert-lifecycle.js';
import type { AlertsConfig } from '../contracts/config-alerts.js';
import type { Logger } from '../shared/logger.js';
import type { RegistryStore } from '../shared/registry.js';
import { type Actor, changeHistory, type HistoryItem, operatorHistory } from './history.js';
import { engineConfig } from './settings.js';
import { KeyedLock } from './keyed-lock.js';
import type { Snapshot } from './records.js';
import { AlertStore } from './store.js';
import { Topology } from './topology.js';
import type { RedisClient } from '../shared/redis.js';

/** Event-time watermarks per stream shard (hash `mf:watermark`). */
export interface Watermarks {
  byShard: ReadonlyMap<number, number>;
  shards: number;
  /** Slowest shard: the watermark of transformer- and system-wide alerts. */
  min: number;
  /**
   * The slowest watermark moved within the wall-clock hold (`lifecycle.holdWallSeconds`): held notices then wait
   * for event time, and the wall-clock fallback is for a watermark that stalled. Unknown (undefined) counts as stalled.
   */
  advancing?: boolean;
}

/** Watermark of a due bucket (see AlertStore.bucketOf): a shard's own, or the slowest for `all`. */
export function bucketWatermark(w: Watermarks, bucket: string): number {
  return bucket === 'all' ? w.min : (w.byShard.get(Number(bucket)) ?? w.min);
}

export function parseWatermarks(raw: Record<string, string>, shards: number): Watermarks {
  const byShard = new Map<number, number>();
  for (const [k, v] of Object.entries(raw)) {
    const shard = Number(k);
    const ms = Number(v);
    if (Number.isInteger(shard) && shard >= 0 && Number.isFinite(ms)) byShard.set(shard, ms);
  }
  const values = [...byShard.values()];
  return {
    byShard,
    shards,
    min: values.length === 0 ? -Infinity : Math.min(...values),
  };
}

const NO_WATERMARKS = (shards: number): Watermarks => ({ byShard: new Map(), shards, min: -Infinity });

/**
 * The stream's watermarks as far as the alert service has caught up with them. The stream worker enqueues a batch's
 * events before it publishes the watermark the batch reached, so a watermark read at wall time `at` is safe for the
 * alerts once every event job enqueued before `at` is done. Without this, a backlog on the `events` queue (a
 * backfill, a restart) lets the sweep release a held last-gasp notice while the gasps of the rest of its
 * transformer, which would have made it an outage, still wait in the queue.
 */
export class CaughtUpWatermarks {
  private samples: Array<{ at: number; wm: Watermarks }> = [];
  private lastMin = -Infinity;
  private movedAt = -Infinity;
  private lastOldest: number | null = null;

  constructor(
    private readonly shards: number,
    /** How long a watermark that does not move counts as still advancing (the hold's wall-clock fallback). */
    private readonly stallMs: number,
  ) {}

  /**
   * See `pick`; also says whether it is still advancing: it moved within `stallMs`, or the events backlog that holds
   * it back is being worked off (its oldest job changed within `stallMs`). A hung events worker or a stream that
   * gets no data stalls it.
   */
  next(at: number, read: Watermarks, oldestPending: number | null): Watermarks {
    const wm = this.pick(at, read, oldestPending);
    if (wm.min > this.lastMin) {
      this.lastMin = wm.min;
      this.movedAt = at;
    }
    if (oldestPending !== null && oldestPending !== this.lastOldest) {
      this.lastOldest = oldestPending;
      this.movedAt = at;
    }
    return { ...wm, advancing: at - this.movedAt < this.stallMs };
  }

  /**
   * `read`: the watermarks just read at wall time `at`; `oldestPending`: enqueue time of the oldest event job not
   * finished yet (waiting or active), null when none is. Returns the newest reading the events have caught up with.
   */
  private pick(at: number, read: Watermarks, oldestPending: number | null): Watermarks {
    this.samples.push({ at, wm: read });
    if (oldestPending === null) {
      this.samples = [{ at, wm: read }];
      return read;
    }
    let safe = -1;
    for (let i = 0; i < this.samples.length; i++) if ((this.samples[i]?.at ?? Infinity) < oldestPending) safe = i;
    if (safe < 0) return NO_WATERMARKS(this.shards);
    this.samples = this.samples.slice(safe);
    return this.samples[0]?.wm ?? NO_WATERMARKS(this.shards);
  }
}

export class ContentionError extends Error {
  override name = 'ContentionError';
}

export type EventOutcome = { status: 'applied'; changes: AlertChangeRecord[] } | { status: 'duplicate' | 'noop' };

export type OperatorOutcomeView = { status: 'ok'; alert: AlertRecord } | { status: 'not-found' } | { status: 'conflict'; alert: AlertRecord };

export interface SweepStats {
  looked: number;
  changed: number;
  deleted: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Reads what a decision needs, lets the pure engine decide, commits atomically; on a lost race re-reads and
 * decides again. Used by the alerts role (events, sweep) and by the API (operator actions).
 */
export class AlertService {
  private readonly lock = new KeyedLock();

  constructor(
    private readonly store: AlertStore,
    private readonly topology: Topology,
    private readonly cfg: EngineConfig,
    private readonly log: Logger,
    private readonly opts: { dedupSeconds: number; retentionMs: number; maxAttempts?: number; onConflict?: () => void } = {
      dedupSeconds: 172_800,
      retentionMs: 90 * 86_400_000,
    },
  ) {}

  /** Re-reads and decides again until the commit wins; contention is transient, so this gives up only very late. */
  private async retry<T>(what: string, attempt: (n: number) => Promise<T | 'conflict'>): Promise<T> {
    const max = this.opts.maxAttempts ?? 1000;
    for (let n = 0; n < max; n++) {
      const r = await attempt(n);
      if (r !== 'conflict') return r;
      this.opts.onConflict?.();
      // Jittered, growing pause so racing processes fall out of step.
      await sleep(Math.random() * Math.min(1 + n, 50));
    }
    throw new ContentionError(`${what}: still conflicting after ${max} attempts`);
  }

  /** Wake parked alerts of the meters an outage no longer covers. */
  private async wakeIds(meters: readonly string[]): Promise<string[]> {
    if (meters.length === 0) return [];
    const keys = meters.flatMap((m) => this.cfg.outage.suppressTypes.map((t) => `${t}:${m}`));
    return this.store.idsOfKeys(keys);
  }

  /** Commits an engine result with its history entries (by default one per lifecycle change, by the pipeline). */
  private async commit(
    snapshot: Snapshot,
    r: EngineResult,
    now: number,
    eventId?: string,
    history: readonly HistoryItem[] = changeHistory(r.changes),
  ): Promise<{ status: 'ok'; changes: AlertChangeRecord[]; alerts: AlertRecord[] } | 'conflict' | 'dup'> {
    const res = await this.store.commit({
      snapshot,
      alerts: r.alerts,
      tracker: r.tracker,
      changes: r.changes,
      wake: await this.wakeIds(r.unpark),
      cleared: r.cleared,
      history,
      ...(eventId === undefined ? {} : { eventId, dedupSeconds: this.opts.dedupSeconds }),
      now,
    });
    if (res.status === 'ok') return res;
    return res.status;
  }

  async handleEvent(ev: DetectionEvent, clock: () => number = Date.now): Promise<EventOutcome> {
    const meter = ev.subjectKind === 'meter' ? await this.topology.meter(ev.subject) : null;
    const plan = planEvent(ev, meter, this.cfg);
    const topo = plan.transformerId === null ? null : await this.topology.transformer(plan.transformerId);
    const held = topo === null ? plan.alertKeys : [...plan.alertKeys, `t:${topo.transformerId}`];
    return this.lock.run(held, () =>
      this.retry(`event ${ev.id}`, async () => {
        const snap = await this.store.load(plan.alertKeys, topo === null ? null : topo.transformerId);
        const r = applyEvent({ event: ev, meter, topology: topo, alerts: snap.byKey, cleared: snap.cleared, tracker: snap.tracker, now: clock() }, this.cfg);
        if (r.alerts.length === 0 && r.tracker === null && r.cleared.set.length === 0 && r.cleared.drop.length === 0) return { status: 'noop' as const };
        const c = await this.commit(snap, r, clock(), ev.id);
        if (c === 'dup') return { status: 'duplicate' as const };
        if (c === 'conflict') return c;
        return { status: 'applied' as const, changes: c.changes };
      }),
    );
  }

  /**
   * An operator's ack, resolve, assignment or comment, recorded in the alert's history with who did it (`tokenId`:
   * the API token's id; `comment`: the note that goes with it) in the same commit.
   */
  async operator(
    id: string,
    action: OperatorAction,
    note: { tokenId?: string | null; comment?: string | null } = {},
    clock: () => number = Date.now,
  ): Promise<OperatorOutcomeView> {
    const actor: Actor = { by: action.by, tokenId: note.tokenId ?? null, comment: note.comment ?? null };
    return this.retry(`${action.kind} ${id}`, async () => {
      const { snapshot, alerts } = await this.store.loadIds([id]);
      const alert = alerts[0];
      if (alert === undefined) return { status: 'not-found' as const };
      const tracker = alert.type === 'outage' && alert.transformerId !== null ? await this.store.loadTracker(snapshot, alert.transformerId) : null;
      const now = clock();
      const out = applyOperator(alert, tracker, action, now);
      if (!out.ok) return { status: 'conflict' as const, alert: out.alert };
      const history = operatorHistory(id, action, out.result.changes, out.result.alerts.length > 0, actor, now);
      if (out.result.alerts.length === 0 && history.length === 0) return { status: 'ok' as const, alert };
      const c = await this.commit(snapshot, out.result, now, undefined, history);
      if (c === 'conflict') return c;
      if (c === 'dup') throw new Error('operator commit reported a duplicate');
      return { status: 'ok' as const, alert: c.alerts.find((a) => a.id === id) ?? out.alert };
    });
  }

  /** One alert: auto-resolve, release or park held notices; keeps the due indexes honest. */
  private async sweepOne(id: string, wm: Watermarks, clock: () => number): Promise<boolean> {
    return this.retry(`sweep ${id}`, async () => {
      const { snapshot, alerts } = await this.store.loadIds([id]);
      const alert = alerts[0];
      if (alert === undefined) {
        await this.store.forgetDue(id);
        return false;
      }
      const covered = alert.meterId !== null && alert.transformerId !== null && this.cfg.outage.suppressTypes.includes(alert.type);
      const tracker = covered && alert.transformerId !== null ? await this.store.loadTracker(snapshot, alert.transformerId) : null;
      const now = clock();
      const tr = sweepAlert(alert, tracker, bucketWatermark(wm, this.store.bucketOf(alert)), now, this.cfg, wm.advancing === true);
      if (tr === null) {
        const due = dueTimes(alert, this.cfg.lifecycle);
        // Woken but nothing to do (or resolved meanwhile): rewrite so the indexes match the record again.
        if (due.wall !== null || due.event !== null) return false;
        const c = await this.commit(snapshot, alertsOnly([alert], []), now);
        return c === 'conflict' ? c : false;
      }
      // A released notice is no news for the history (the alert opened when it was held); an auto-resolve is.
      const history = changeHistory(tr.changes.filter((ch) => ch.kind === 'resolved'));
      const c = await this.commit(snapshot, alertsOnly([tr.alert], tr.changes), now, undefined, history);
      return c === 'conflict' ? c : true;
    });
  }

  async sweep(wm: Watermarks, clock: () => number = Date.now, batch = 500): Promise<SweepStats> {
    const stats: SweepStats = { looked: 0, changed: 0, deleted: 0 };
    const ids = await this.store.dueIds((b) => bucketWatermark(wm, b), clock(), batch);
    for (const id of ids) {
      stats.looked++;
      if (await this.sweepOne(id, wm, clock)) stats.changed++;
    }
    return stats;
  }

  /** Deletes resolved alerts last seen more than the retention before the slowest watermark. */
  async retention(wm: Watermarks, clock: () => number = Date.now, maxScan = 5000): Promise<number> {
    if (!Number.isFinite(wm.min)) return 0;
    const cutoff = wm.min - this.opts.retentionMs;
    let deleted = 0;
    const ids = await this.store.oldestIds(maxScan);
    for (let i = 0; i < ids.length; i += 100) {
      const { snapshot, alerts } = await this.store.loadIds(ids.slice(i, i + 100));
      // Ids sort by first event time: once one started after the cutoff, none after it can be expired.
      if (alerts.length > 0 && alerts.every((a) => a.firstSeen >= cutoff)) break;
      const expired = alerts.filter((a) => isExpired(a, wm.min, this.opts.retentionMs));
      if (expired.length === 0) continue;
      const res = await this.store.commit({ snapshot, alerts: [], tracker: null, changes: [], remove: expired, now: clock() });
      if (res.status === 'ok') deleted += expired.length;
      else this.log.debug({ n: expired.length }, 'retention lost a race, next sweep retries');
    }
    return deleted;
  }
}

/**
 * The alert store and service as the alerts role and the API both use them (one wiring): alert records under
 * `keyPrefix`, the transformer topology from the registry, the engine settings and retention from config/alerts.yaml.
 */
export function createAlertService(
  redis: RedisClient,
  registry: RegistryStore,
  cfg: AlertsConfig,
  shards: number,
  log: Logger,
  opts: { keyPrefix?: string; onConflict?: () => void } = {},
): { store: AlertStore; service: AlertService } {
  const engine = engineConfig(cfg);
  const store = new AlertStore(redis, engine.lifecycle, shards, opts.keyPrefix ?? 'mf', engine.outage.suppressTypes);
  const service = new AlertService(store, new Topology(registry), engine, log, {
    dedupSeconds: cfg.worker.dedupHours * 3600,
    retentionMs: cfg.lifecycle.retentionDays * 86_400_000,
    ...(opts.onConflict === undefined ? {} : { onConflict: opts.onConflict }),
  });
  return { store, service };
}
