import { Queue } from 'bullmq';
import { EVENTS_QUEUE } from '../contracts/alert.js';
import { BILLING_QUEUE } from '../contracts/billing.js';
import { DetectionConfig } from '../contracts/config-detection.js';
import { RegistryConfig } from '../contracts/config-registry.js';
import { TariffsConfigSchema } from '../contracts/config-tariffs.js';
import type { DetectionEvent } from '../contracts/events.js';
import { compileSettings } from '../domain/stream-settings.js';
import { ownedShards } from '../domain/shard.js';
import { bandAt, compileTariffs, tariffFor, type Tariffs } from '../domain/tariffs.js';
import { recomputeJob } from '../shared/billing-store.js';
import { loadSection, type AppConfig } from '../shared/config.js';
import { createInflux, type Influx, type LineWriter } from '../shared/influx.js';
import type { Logger } from '../shared/logger.js';
import type { Counter } from '../shared/metrics.js';
import { closeRedis, createRedis, influxQuarantine, keys, queuePrefix, type RedisClient } from '../shared/redis.js';
import { RegistryStore } from '../shared/registry.js';
import { once, type RoleContext, type RoleHandle } from '../shared/role.js';
import { LoadAggregator } from './load-aggregator.js';
import { PipelineStats, streamMetrics } from './pipeline-stats.js';
import { RegistryCache } from './registry-cache.js';
import type { MeterRecord, Recompute } from './shard-work.js';
import { streamKeys } from './keys.js';
import { ShardLeases, Turn } from './leases.js';
import { StreamWorker } from './worker.js';

export interface StreamHandle extends RoleHandle {
  readonly worker: StreamWorker;
}

/** BullMQ refuses custom ids with more than two ':'; event ids (`type:subject:ts:status`) map 1:1 with '|'. */
export const jobIdOf = (eventId: string): string => eventId.replaceAll(':', '|');

/** Interval `band` tag: the meter's time-of-use band from config/tariffs.yaml. */
function bandOf(tariffs: Tariffs): (meter: MeterRecord, tsMs: number) => string {
  return (meter, tsMs) => bandAt(tariffFor(tariffs, meter.tariff), tsMs);
}

/** The worker's outputs to other roles: detection events (`events`) and billing recomputes (`billing`). */
interface StreamQueues {
  enqueueEvents(events: DetectionEvent[]): Promise<void>;
  enqueueRecomputes(list: Recompute[]): Promise<void>;
  close(): Promise<void>;
}

/** Completed jobs are kept `keepSeconds`, so a replay's identical job id is still deduplicated. */
function streamQueues(connection: RedisClient, keepSeconds: number, eventsTotal: Counter): StreamQueues {
  const eventsQueue = new Queue(EVENTS_QUEUE, { connection, prefix: queuePrefix(EVENTS_QUEUE) });
  const billingQueue = new Queue(BILLING_QUEUE, { connection, prefix: queuePrefix(BILLING_QUEUE) });
  return {
    async enqueueEvents(events) {
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
    },
    async enqueueRecomputes(list) {
      if (list.length === 0) return;
      await billingQueue.addBulk(list.map((r) => recomputeJob(r, keepSeconds)));
    },
    async close() {
      await eventsQueue.close();
      await billingQueue.close();
    },
  };
}

/**
 * Load judging waits for its points to be in InfluxDB: it runs beside the consume loop, one round at a time, and
 * across workers one pass at a time (`turn`): a pass reads and writes keys of every transformer.
 */
function loadJudging(load: LoadAggregator, turn: Turn, log: Logger): { idle(): Promise<void>; settled(): Promise<void>; final(): Promise<void> } {
  let lastJudge = 0;
  let judging: Promise<void> | undefined;
  return {
    async idle() {
      if (judging !== undefined || Date.now() - lastJudge < 1000) return;
      lastJudge = Date.now();
      // Another worker's pass: this one only learns how far the fleet is judged (late contributions are dropped).
      judging = turn
        .run((mine) => load.judgeDue(5000, mine))
        .then(async (ran) => {
          if (!ran) await load.fleetWatermark();
        })
        .catch((err: unknown) => log.warn({ err }, 'load judging failed; retried next round'))
        .finally(() => {
          judging = undefined;
        });
    },
    async settled() {
      await judging;
    },
    // The final checkpoint moved the watermark: judge what it closed now, with every contribution in, rather than
    // leaving it to a later start (a replay then judges the same intervals the same way). Another worker's pass
    // judges them otherwise.
    async final() {
      await judging;
      try {
        await turn.run((mine) => load.judgeDue(Number.MAX_SAFE_INTEGER, mine));
      } catch (err) {
        log.warn({ err }, 'final load judging failed; the next start judges those intervals');
      }
    },
  };
}

interface WorkerParts {
  config: AppConfig;
  det: DetectionConfig;
  settings: ReturnType<typeof compileSettings>;
  tariffs: Tariffs;
  redis: RedisClient;
  leases: ShardLeases;
  consumer: string;
  aggMs: number;
  writer: LineWriter;
  registry: RegistryStore;
  cache: RegistryCache;
  queues: StreamQueues;
  load: LoadAggregator;
  judging: ReturnType<typeof loadJudging>;
  stats: PipelineStats;
  log: Logger;
}

function createWorker(p: WorkerParts): StreamWorker {
  const { det, writer } = p;
  const worker: StreamWorker = new StreamWorker({
    redis: p.redis,
    leases: p.leases,
    consumer: p.consumer,
    work: {
      settings: p.settings,
      watermarkLatenessMs: det.watermark.latenessMinutes * 60_000,
      maxFutureMs: det.intervals.maxFutureMinutes * 60_000,
      aggMs: p.aggMs,
      band: bandOf(p.tariffs),
      dayZone: (meter) => tariffFor(p.tariffs, meter.tariff).timezone,
    },
    batchEntries: det.worker.batchEntries,
    batchReadings: det.worker.batchReadings,
    idleMs: det.worker.idleMs,
    rebalanceMs: Math.max(100, det.worker.leaseMs / 3),
    dlqMaxLen: det.worker.dlqMaxLen,
    meters: (ids) => p.cache.getMeters(ids),
    defaults: (id) => p.registry.withDefaults(id),
    writeLines: (lines) => writer.write(lines),
    drainLines: () => writer.drained(),
    flushLines: () => writer.flush(),
    checkpointMs: det.worker.checkpointMs,
    enqueueEvents: (events) => p.queues.enqueueEvents(events),
    enqueueRecomputes: (list) => p.queues.enqueueRecomputes(list),
    contributeLoad: (out) => p.load.contribute(out.load),
    idle: () => p.judging.idle(),
    onBatch: (shard, out, ms) => p.stats.onBatch(shard, out, ms, worker.watermarks().get(shard) ?? 0),
    log: p.log,
  });
  return worker;
}

interface Closing {
  worker: StreamWorker;
  judging: ReturnType<typeof loadJudging>;
  load: LoadAggregator;
  stats: PipelineStats;
  writer: LineWriter;
  influx: Influx;
  queues: StreamQueues;
  connections: { redis: RedisClient; queueConn: RedisClient };
  log: Logger;
}

/** Stops reading, finishes what is in flight, judges what the last checkpoint closed, then closes in reverse order. */
async function closeStream(c: Closing): Promise<void> {
  c.stats.stop();
  await c.worker.stop();
  await c.judging.final();
  c.writer.write(c.stats.lines(Date.now(), 0, c.worker.lastRx));
  await c.writer.close();
  await c.influx.close();
  await c.queues.close();
  await closeRedis(c.connections.queueConn);
  await closeRedis(c.connections.redis);
  c.log.info({ totals: c.worker.totals, events: c.worker.eventsEnqueued }, 'stream worker stopped');
}

/** The stream role: Redis Stream shards → intervals (VEE), baselines, anomalies and load peaks. */
export async function startStream(ctx: RoleContext): Promise<StreamHandle> {
  const { config } = ctx;
  const log = ctx.log.child({ component: 'stream' });
  const det = loadSection('detection', DetectionConfig);
  const tariffs = compileTariffs(loadSection('tariffs', TariffsConfigSchema), config.timezone);
  const registryCfg = loadSection('registry', RegistryConfig);
  const settings = compileSettings(det, config.timezone);
  // Static assignment (WORKER_COUNT > 1) fixes the candidate shards; otherwise workers balance all of them.
  const fixed = config.workerCount > 1 ? ownedShards(config.streamShards, config.workerIndex, config.workerCount) : undefined;
  // Unique per process: a consumer's pending entries and a lease are its own, even with MF_INSTANCE shared.
  const consumer = `stream-${config.instance}-${config.workerIndex}-${process.pid}`;
  const aggMs = det.feederOverload.intervalMinutes * 60_000;

  const redis = createRedis(config.redis, 'meterflow-stream');
  const queueConn = createRedis(config.redis, 'meterflow-stream-queues');
  const influx = await createInflux(config.influx, log);
  await influx.ensureDatabase();
  const writer = influx.writer({
    batchSize: 5000,
    flushMs: 200,
    highWater: 200_000,
    quarantine: influxQuarantine(redis, `stream:${config.instance}`, det.worker.dlqMaxLen),
  });
  const metrics = streamMetrics(ctx.metrics);
  const queues = streamQueues(queueConn, det.worker.eventsKeepSeconds, metrics.eventsTotal);
  const registry = new RegistryStore(redis, registryCfg.defaults);
  const cache = new RegistryCache(registry, 60_000);
  const load = new LoadAggregator({
    redis,
    settings: det,
    aggMs,
    retainMs: det.feederOverload.retainHours * 3_600_000,
    shards: config.streamShards,
    transformer: (id) => cache.transformer(id),
    emit: async (lines, events) => {
      writer.write(lines);
      await writer.flush();
      await queues.enqueueEvents(events);
    },
  });
  const judging = loadJudging(load, new Turn(redis, streamKeys.judgeTurn, consumer, det.worker.leaseMs), log);
  const stats = new PipelineStats({ metrics, instance: config.instance, writer, log });
  const leases = new ShardLeases({ redis, consumer, shards: config.streamShards, fixed, ttlMs: det.worker.leaseMs, log });
  const worker = createWorker({ config, det, settings, tariffs, redis, leases, consumer, aggMs, writer, registry, cache, queues, load, judging, stats, log });
  stats.start(
    det.worker.statsSeconds,
    async () => (await Promise.all(worker.ownedShards().map((s) => redis.xlen(keys.readings(s))))).reduce((a, b) => a + b, 0),
    () => worker.lastRx,
  );

  await worker.start();
  log.info(
    { shards: worker.ownedShards(), fixed, consumer, leaseMs: det.worker.leaseMs, influxApi: influx.api, timezone: config.timezone },
    'stream worker started',
  );

  const close = once(() => closeStream({ worker, judging, load, stats, writer, influx, queues, connections: { redis, queueConn }, log }));
  return { worker, close };
}
