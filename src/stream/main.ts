import { Queue } from 'bullmq';
import { Counter, Gauge, Histogram } from 'prom-client';
import { DetectionConfig } from '../contracts/config-detection.js';
import { RegistryConfig } from '../contracts/config-registry.js';
import { TariffsConfigSchema } from '../contracts/config-tariffs.js';
import type { DetectionEvent } from '../contracts/events.js';
import type { TransformerRecord } from '../contracts/registry.js';
import { compileSettings } from '../domain/meter-state.js';
import { ownedShards } from '../domain/shard.js';
import { bandAt, compileTariffs, tariffFor, type Tariffs } from '../domain/tariffs.js';
import { loadSection } from '../shared/config.js';
import { createInflux } from '../shared/influx.js';
import { int, lp } from '../shared/line-protocol.js';
import { metric } from '../shared/metrics.js';
import { closeRedis, createRedis, influxQuarantine, keys } from '../shared/redis.js';
import { RegistryStore } from '../shared/registry.js';
import { once, type RoleContext, type RoleHandle } from '../shared/role.js';
import { LoadAggregator } from './load-aggregator.js';
import { addCounts, type BatchCounts, emptyCounts, type MeterRecord, type Recompute } from './shard-work.js';
import { StreamWorker } from './worker.js';
import { statsLoop } from '../shared/stats.js';

export interface StreamHandle extends RoleHandle {
  readonly worker: StreamWorker;
}

/** BullMQ refuses custom ids with more than two ':'; event ids (`type:subject:ts:status`) map 1:1 with '|'. */
export const jobIdOf = (eventId: string): string => eventId.replaceAll(':', '|');

/** Registry lookups, cached for a minute so registry edits reach a running worker. */
class RegistryCache {
  private readonly meters = new Map<string, { rec: MeterRecord; at: number }>();
  private readonly transformers = new Map<string, { rec: TransformerRecord | undefined; at: number }>();
  constructor(
    private readonly store: RegistryStore,
    private readonly ttlMs: number,
  ) {}

  async getMeters(ids: string[]): Promise<Map<string, MeterRecord>> {
    const now = Date.now();
    const out = new Map<string, MeterRecord>();
    const missing: string[] = [];
    for (const id of ids) {
      const hit = this.meters.get(id);
      if (hit !== undefined && now - hit.at < this.ttlMs) out.set(id, hit.rec);
      else missing.push(id);
    }
    if (missing.length > 0) {
      for (const [id, rec] of await this.store.getMeters(missing)) {
        this.meters.set(id, { rec, at: now });
        out.set(id, rec);
      }
    }
    return out;
  }

  async transformer(id: string): Promise<TransformerRecord | undefined> {
    const now = Date.now();
    const hit = this.transformers.get(id);
    if (hit !== undefined && now - hit.at < this.ttlMs) return hit.rec;
    const rec = await this.store.getTransformer(id);
    this.transformers.set(id, { rec, at: now });
    return rec;
  }
}

/** Interval `band` tag: the meter's time-of-use band from config/tariffs.yaml. */
function bandOf(tariffs: Tariffs): (meter: MeterRecord, tsMs: number) => string {
  return (meter, tsMs) => bandAt(tariffFor(tariffs, meter.tariff), tsMs);
}

/** The stream role: Redis Stream shards → intervals (VEE), baselines, anomalies and load peaks. */
export async function startStream(ctx: RoleContext): Promise<StreamHandle> {
  const { config, metrics } = ctx;
  const log = ctx.log.child({ component: 'stream' });
  const det = loadSection('detection', DetectionConfig);
  const tariffs = compileTariffs(loadSection('tariffs', TariffsConfigSchema), config.timezone);
  const registryCfg = loadSection('registry', RegistryConfig);
  const settings = compileSettings(det, config.timezone);
  const shards = ownedShards(config.streamShards, config.workerIndex, config.workerCount);
  const aggMs = det.feederOverload.intervalMinutes * 60_000;

  const redis = createRedis(config.redis.url, 'meterflow-stream');
  const reader = createRedis(config.redis.url, 'meterflow-stream-reader');
  const queueConn = createRedis(config.redis.url, 'meterflow-stream-queues');
  const influx = await createInflux(config.influx, log);
  await influx.ensureDatabase();
  const writer = influx.writer({
    batchSize: 5000,
    flushMs: 200,
    highWater: 200_000,
    quarantine: influxQuarantine(redis, `stream:${config.instance}`, det.worker.dlqMaxLen),
  });
  const eventsQueue = new Queue('events', { connection: queueConn });
  const billingQueue = new Queue('billing', { connection: queueConn });
  const registry = new RegistryStore(redis, registryCfg.defaults);
  const cache = new RegistryCache(registry, 60_000);
  const keepSeconds = det.worker.eventsKeepSeconds;

  const readingsTotal = metric(
    metrics,
    'meterflow_stream_readings_total',
    () =>
      new Counter({
        name: 'meterflow_stream_readings_total',
        help: 'Readings consumed by the stream worker, by outcome',
        labelNames: ['outcome'],
        registers: [metrics],
      }),
  );
  const eventsTotal = metric(
    metrics,
    'meterflow_stream_events_total',
    () =>
      new Counter({
        name: 'meterflow_stream_events_total',
        help: 'Detection events enqueued, by type and status',
        labelNames: ['type', 'status'],
        registers: [metrics],
      }),
  );
  const batchSeconds = metric(
    metrics,
    'meterflow_stream_batch_seconds',
    () =>
      new Histogram({
        name: 'meterflow_stream_batch_seconds',
        help: 'Time to process one read of the shards and hand its outputs on (checkpoints run in the background)',
        buckets: [0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
        registers: [metrics],
      }),
  );
  const watermarkGauge = metric(
    metrics,
    'meterflow_stream_watermark_ms',
    () => new Gauge({ name: 'meterflow_stream_watermark_ms', help: 'Event-time watermark per shard', labelNames: ['shard'], registers: [metrics] }),
  );

  async function enqueueEvents(events: DetectionEvent[]): Promise<void> {
    if (events.length === 0) return;
    await eventsQueue.addBulk(
      events.map((e) => ({
        name: e.type,
        data: e,
        opts: {
          jobId: jobIdOf(e.id),
          attempts: 5,
          backoff: { type: 'exponential', delay: 1000 },
          removeOnComplete: { age: keepSeconds },
          removeOnFail: { age: 7 * 86_400 },
        },
      })),
    );
    for (const e of events) eventsTotal.inc({ type: e.type, status: e.status });
  }

  async function enqueueRecomputes(list: Recompute[]): Promise<void> {
    if (list.length === 0) return;
    await billingQueue.addBulk(
      list.map((r) => ({
        name: 'recompute',
        data: { meterId: r.meterId, day: r.day },
        opts: {
          jobId: `recompute|${r.meterId}|${r.day}|${r.entryId}`,
          attempts: 5,
          backoff: { type: 'exponential', delay: 1000 },
          removeOnComplete: { age: keepSeconds },
          removeOnFail: { age: 7 * 86_400 },
        },
      })),
    );
  }

  const load = new LoadAggregator({
    redis,
    settings: det,
    aggMs,
    retainMs: det.feederOverload.retainHours * 3_600_000,
    transformer: (id) => cache.transformer(id),
    emit: async (lines, events) => {
      writer.write(lines);
      await writer.flush();
      await enqueueEvents(events);
    },
  });
  let lastJudge = 0;
  let judging: Promise<void> | undefined;
  const period = emptyCounts();
  const deadByReason = new Map<string, number>();

  const worker = new StreamWorker({
    redis,
    reader,
    shards,
    consumer: `stream-${config.workerIndex}`,
    work: {
      settings,
      watermarkLatenessMs: det.watermark.latenessMinutes * 60_000,
      maxFutureMs: det.intervals.maxFutureMinutes * 60_000,
      aggMs,
      band: bandOf(tariffs),
    },
    batchEntries: det.worker.batchEntries,
    batchReadings: det.worker.batchReadings,
    blockMs: det.worker.blockMs,
    claimIdleMs: det.worker.claimIdleMs,
    dlqMaxLen: det.worker.dlqMaxLen,
    meters: (ids) => cache.getMeters(ids),
    defaults: (id) => registry.withDefaults(id),
    writeLines: (lines) => writer.write(lines),
    drainLines: () => writer.drained(),
    flushLines: () => writer.flush(),
    checkpointMs: det.worker.checkpointMs,
    enqueueEvents,
    enqueueRecomputes,
    contributeLoad: (out) => load.contribute(out.load),
    // Judging waits for its points to be in InfluxDB: it runs beside the consume loop, one round at a time.
    idle: async () => {
      if (judging !== undefined || Date.now() - lastJudge < 1000) return;
      lastJudge = Date.now();
      judging = load
        .judgeDue()
        .catch((err: unknown) => log.warn({ err }, 'load judging failed; retried next round'))
        .finally(() => {
          judging = undefined;
        });
    },
    onBatch: (shard, out, ms) => {
      batchSeconds.observe(ms / 1000);
      addCounts(period, out.counts);
      const c = out.counts;
      readingsTotal.inc({ outcome: 'accepted' }, c.accepted);
      readingsTotal.inc({ outcome: 'duplicate' }, c.duplicates + c.conflicts);
      readingsTotal.inc({ outcome: 'late' }, c.late);
      readingsTotal.inc({ outcome: 'future' }, c.future);
      for (const dl of out.deadLetters) deadByReason.set(dl.reason, (deadByReason.get(dl.reason) ?? 0) + 1);
      watermarkGauge.set({ shard: String(shard) }, worker.watermarks().get(shard) ?? 0);
      if (out.counts.late > 0) log.debug({ shard, late: out.counts.late }, 'late reads dead-lettered');
    },
    log,
  });

  /** `pipeline` and `dlq` points as the pipeline-health dashboard reads them (docs/operators.md). */
  function statsLines(now: number, c: BatchCounts, backlog: number): string[] {
    const lines = [
      lp(
        'pipeline',
        { role: 'stream', instance: config.instance },
        {
          readings: int(c.readings),
          rejected: int(c.late + c.future + c.malformed),
          duplicates: int(c.duplicates + c.conflicts),
          lag: int(backlog > 0 && worker.lastRx > 0 ? Math.max(0, now - worker.lastRx) : 0),
          influx_backlog: int(writer.backlog),
          influx_retries: int(writer.stats.retries),
          influx_failed_batches: int(writer.stats.failedBatches),
        },
        now,
      ),
    ];
    for (const [reason, n] of deadByReason) lines.push(lp('dlq', { reason, instance: config.instance }, { count: int(n) }, now));
    deadByReason.clear();
    return lines;
  }
  const stats = statsLoop(
    det.worker.statsSeconds,
    log,
    async () => {
      const lens = await Promise.all(shards.map((s) => redis.xlen(keys.readings(s))));
      const lines = statsLines(
        Date.now(),
        period,
        lens.reduce((a, b) => a + b, 0),
      );
      Object.assign(period, emptyCounts());
      return lines;
    },
    (lines) => writer.write(lines),
  );

  await worker.start();
  log.info({ shards, consumer: `stream-${config.workerIndex}`, influxApi: influx.api, timezone: config.timezone }, 'stream worker started');

  const close = once(async () => {
    stats.stop();
    await worker.stop();
    await judging;
    // The final checkpoint moved the watermark: judge what it closed now, with every contribution in, rather than
    // leaving it to a later start (a replay then judges the same intervals the same way).
    try {
      await load.judgeDue(Number.MAX_SAFE_INTEGER);
    } catch (err) {
      log.warn({ err }, 'final load judging failed; the next start judges those intervals');
    }
    writer.write(statsLines(Date.now(), period, 0));
    await writer.close();
    await influx.close();
    await eventsQueue.close();
    await billingQueue.close();
    await closeRedis(queueConn);
    await closeRedis(reader);
    await closeRedis(redis);
    log.info({ totals: worker.totals, events: worker.eventsEnqueued }, 'stream worker stopped');
  });
  return { worker, close };
}
