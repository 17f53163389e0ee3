import type { Queue } from 'bullmq';
import { type AlertService, CaughtUpWatermarks, parseWatermarks, type SweepStats } from '../alerting/service.js';
import type { ActiveCounts } from '../alerting/store.js';
import type { Logger } from '../shared/logger.js';
import type { Gauge } from '../shared/metrics.js';
import type { RedisClient } from '../shared/redis.js';

export interface SweeperDeps {
  redis: RedisClient;
  /** Hash of the stream's event-time watermarks per shard. */
  watermarkKey: string;
  shards: number;
  /** lifecycle.holdWallSeconds in ms: how long a still watermark counts as advancing. */
  holdWallMs: number;
  sweepSeconds: number;
  /** The `events` queue: the sweep only trusts watermarks the handled events have caught up with. */
  eventsQueue: Queue;
  service: AlertService;
  /** Alerts not resolved, split by outage suppression, and the gauge that reports them (label `suppressed`). */
  activeCounts: () => Promise<ActiveCounts>;
  activeGauge: Gauge;
  log: Logger;
}

/**
 * The periodic sweep, driven by the event-time watermark: auto-resolves and releases held notices every
 * `sweepSeconds`, and runs the retention every 720th round. One sweep at a time; the next is scheduled when it ends.
 */
export class Sweeper {
  private readonly caughtUp: CaughtUpWatermarks;
  private sweeping: Promise<SweepStats> | undefined;
  private ticks = 0;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly d: SweeperDeps) {
    this.caughtUp = new CaughtUpWatermarks(d.shards, d.holdWallMs);
  }

  /** Enqueue time of the oldest event job not done yet (the wait list is FIFO; active jobs are few). */
  private async oldestPendingEvent(): Promise<number | null> {
    const q = this.d.eventsQueue;
    const jobs = await q.getJobs(['active'], 0, -1);
    jobs.push(...(await q.getJobs(['wait'], 0, 0, true)));
    const times = jobs.map((j) => j.timestamp).filter((t) => Number.isFinite(t));
    return times.length === 0 ? null : Math.min(...times);
  }

  async sweepNow(): Promise<SweepStats> {
    const { redis, service } = this.d;
    const at = Date.now();
    const read = parseWatermarks(await redis.hgetall(this.d.watermarkKey), this.d.shards);
    const wm = this.caughtUp.next(at, read, await this.oldestPendingEvent());
    const stats = await service.sweep(wm);
    if (this.ticks++ % 720 === 0) stats.deleted = await service.retention(wm);
    const counts = await this.d.activeCounts();
    this.d.activeGauge.set({ suppressed: 'false' }, counts.actionable);
    this.d.activeGauge.set({ suppressed: 'true' }, counts.suppressed);
    return stats;
  }

  start(): void {
    this.timer = setTimeout(() => {
      this.sweeping = this.sweepNow();
      this.sweeping
        .catch((err: unknown) => this.d.log.error({ err }, 'alert sweep failed'))
        .finally(() => {
          this.sweeping = undefined;
          if (!this.stopped) this.start();
        });
    }, this.d.sweepSeconds * 1000);
  }

  /** No sweep starts after this; one running finishes (`settled`). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  async settled(): Promise<void> {
    await this.sweeping?.catch(() => undefined);
  }
}
