import { type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import { Compile } from 'typebox/compile';
import { type AlertService, createAlertService, type SweepStats } from '../alerting/service.js';
import { routingConfig, webhookTargets } from '../alerting/settings.js';
import type { AlertStore } from '../alerting/store.js';
import type { WebhookTarget } from '../alerting/webhook.js';
import { DetectionEventPayload, EVENTS_QUEUE, NOTIFY_QUEUE } from '../contracts/alert.js';
import { AlertsConfig } from '../contracts/config-alerts.js';
import { RegistryConfig } from '../contracts/config-registry.js';
import { type AppConfig, loadSection, secretEnv } from '../shared/config.js';
import type { Env } from '../shared/config-env.js';
import { createInflux, type Influx, type LineWriter } from '../shared/influx.js';
import type { Logger } from '../shared/logger.js';
import { closeRedis, createRedis, influxQuarantine, queuePrefix, keys as sharedKeys, type RedisClient } from '../shared/redis.js';
import { RegistryStore } from '../shared/registry.js';
import { once, type RoleContext, type RoleHandle } from '../shared/role.js';
import { Dispatcher, notifyBackoff } from './dispatcher.js';
import { type AlertTotals, alertsMetrics, alertsPipelineStats } from './metrics.js';
import { notifyProcessor } from './notifier.js';
import { Sweeper } from './sweeper.js';

export interface AlertsOptions {
  /** Section already loaded (tests tune it); default config/alerts.yaml (+ MF_CONFIG). */
  alerts?: AlertsConfig;
  /** Where webhook secrets are read from (the variables named by `secretEnv`). Default: the process environment. */
  env?: Env;
  /** Prefix of the alert keys (`<prefix>:{alerts}:…`) and of the watermark hash; tests use a unique one. */
  keyPrefix?: string;
  /** Base of the BullMQ key prefixes (`<base>:{events}`, `<base>:{notify}`; default `mf`); tests use a unique one. */
  queuePrefix?: string;
}

export interface AlertsHandle extends RoleHandle {
  readonly service: AlertService;
  readonly store: AlertStore;
  /** Runs one sweep now (tests; the role also runs it every `worker.sweepSeconds`). */
  sweepNow(): Promise<SweepStats>;
}

const checkEvent = Compile(DetectionEventPayload);

type Metrics = ReturnType<typeof alertsMetrics>;

/** The `events` queue's processor: a detection event, checked against its schema, into the alert service. */
function eventsProcessor(service: AlertService, m: Metrics, totals: AlertTotals, log: Logger): (job: Job) => Promise<string> {
  return async (job) => {
    const data: unknown = job.data;
    if (!checkEvent.Check(data)) {
      m.events.inc({ outcome: 'invalid' });
      const where = checkEvent.Errors(data)[0];
      log.warn({ jobId: job.id, field: where?.instancePath }, 'invalid detection event');
      throw new UnrecoverableError(`invalid detection event: ${where?.instancePath ?? ''} ${where?.message ?? ''}`);
    }
    const r = await service.handleEvent(data);
    m.events.inc({ outcome: r.status });
    totals.events++;
    if (r.status === 'applied') totals.changes += r.changes.length;
    return r.status;
  };
}

interface WorkerParts {
  cfg: AlertsConfig;
  redis: RedisClient;
  /** BullMQ prefix of a queue (src/shared/redis.ts queuePrefix). */
  prefixOf: (queue: string) => string;
  service: AlertService;
  store: AlertStore;
  targets: ReadonlyMap<string, WebhookTarget>;
  m: Metrics;
  totals: AlertTotals;
  log: Logger;
}

/** BullMQ workers on `events` (detection events → alerts) and `notify` (signed webhooks). */
function startWorkers(p: WorkerParts): { eventsWorker: Worker; notifyWorker: Worker } {
  const { cfg, redis, prefixOf, m, totals, log } = p;
  const lock = { lockDuration: cfg.worker.lockSeconds * 1000, stalledInterval: cfg.worker.lockSeconds * 1000 };
  const eventsWorker = new Worker(EVENTS_QUEUE, eventsProcessor(p.service, m, totals, log), {
    connection: redis,
    concurrency: cfg.worker.eventsConcurrency,
    prefix: prefixOf(EVENTS_QUEUE),
    ...lock,
  });
  const notifyWorker = new Worker(
    NOTIFY_QUEUE,
    notifyProcessor({
      targets: p.targets,
      timeoutMs: cfg.notify.timeoutMs,
      store: p.store,
      log: log.child({ component: 'alerts-notify' }),
      onResult: (r) => {
        m.notifications.inc({ result: r });
        if (r === 'delivered') totals.delivered++;
        else if (r === 'retry') totals.retries++;
        else totals.dead++;
      },
    }),
    {
      connection: redis,
      prefix: prefixOf(NOTIFY_QUEUE),
      concurrency: cfg.notify.concurrency,
      settings: { backoffStrategy: notifyBackoff(cfg.notify) },
      ...lock,
    },
  );
  for (const [name, w] of [
    ['events', eventsWorker],
    ['notify', notifyWorker],
  ] as const) {
    w.on('error', (err) => log.error({ err, worker: name }, 'worker error'));
    w.on('failed', (job, err) => {
      if (name === 'events') log.error({ err, jobId: job?.id }, 'detection event failed');
    });
  }
  return { eventsWorker, notifyWorker };
}

/** InfluxDB for the dispatcher's `alert` points and the pipeline stats, when `influx.enabled`. */
async function openInflux(cfg: AlertsConfig, config: AppConfig, redis: RedisClient, log: Logger): Promise<{ influx?: Influx; writer: LineWriter | null }> {
  if (!cfg.influx.enabled) return { writer: null };
  const influx = await createInflux(config.influx, log);
  await influx.ensureDatabase();
  const writer = influx.writer({ batchSize: 1000, flushMs: 1000, quarantine: influxQuarantine(redis, `alerts:${config.instance}`, 100_000) });
  return { influx, writer };
}

interface Closing {
  sweeper: Sweeper;
  stats: { stop(): void } | undefined;
  workers: { eventsWorker: Worker; notifyWorker: Worker };
  dispatcher: Dispatcher;
  queues: { notifyQueue: Queue; eventsQueue: Queue };
  writer: LineWriter | null;
  influx: Influx | undefined;
  connections: { redis: RedisClient; outboxRedis: RedisClient };
  log: Logger;
}

/** Stops taking work, lets in-flight jobs and the sweep finish, then closes in reverse order. */
async function closeAlerts(c: Closing): Promise<void> {
  c.sweeper.stop();
  c.stats?.stop();
  // Stop taking work; in-flight jobs finish (BullMQ waits for them).
  await Promise.all([c.workers.eventsWorker.close(), c.workers.notifyWorker.close()]);
  await c.sweeper.settled();
  await c.dispatcher.stop();
  await c.queues.notifyQueue.close();
  await c.queues.eventsQueue.close();
  await c.writer?.close();
  await c.influx?.close();
  await closeRedis(c.connections.outboxRedis);
  await closeRedis(c.connections.redis);
  c.log.info('alerts stopped');
}

/**
 * The alerts role: a BullMQ worker on `events` turns detection events into alerts (atomic per alert key), the outbox
 * dispatcher turns alert changes into `notify` jobs, a worker on `notify` delivers signed webhooks, and a periodic
 * sweep driven by the event-time watermark auto-resolves and releases held notices.
 */
export async function startAlerts(ctx: RoleContext, opts: AlertsOptions = {}): Promise<AlertsHandle> {
  const { config } = ctx;
  const log = ctx.log.child({ component: 'alerts' });
  const cfg = opts.alerts ?? loadSection('alerts', AlertsConfig);
  const registryCfg = loadSection('registry', RegistryConfig);
  const targets = webhookTargets(cfg, opts.env ?? secretEnv());
  const keyPrefix = opts.keyPrefix ?? 'mf';
  const watermarkKey = opts.keyPrefix === undefined ? sharedKeys.watermark : `${keyPrefix}:watermark`;
  const prefixOf = (queue: string): string => queuePrefix(queue, opts.queuePrefix);
  const m = alertsMetrics(ctx.metrics);
  const totals: AlertTotals = { events: 0, changes: 0, delivered: 0, retries: 0, dead: 0 };

  const redis = createRedis(config.redis, 'meterflow-alerts');
  const outboxRedis = createRedis(config.redis, 'meterflow-alerts-outbox');
  const { influx, writer } = await openInflux(cfg, config, redis, log);
  const { store, service } = createAlertService(redis, new RegistryStore(redis, registryCfg.defaults), cfg, config.streamShards, log, {
    keyPrefix,
    onConflict: () => m.conflicts.inc(),
  });

  const notifyQueue = new Queue(NOTIFY_QUEUE, { connection: redis, prefix: prefixOf(NOTIFY_QUEUE) });
  const dispatcher = new Dispatcher(outboxRedis, store, notifyQueue, routingConfig(cfg, config.timezone), writer, log.child({ component: 'alerts-dispatch' }), {
    group: 'dispatch',
    consumer: `${config.instance}:${process.pid}`,
    attempts: cfg.notify.attempts,
    backoffMs: cfg.notify.backoffMs,
    maxBackoffMs: cfg.notify.maxBackoffMs,
    claimIdleMs: Math.max(5000, cfg.worker.lockSeconds * 1000),
    blockMs: 1000,
  });
  await dispatcher.start();
  const workers = startWorkers({ cfg, redis, prefixOf, service, store, targets, m, totals, log });

  const eventsQueue = new Queue(EVENTS_QUEUE, { connection: redis, prefix: prefixOf(EVENTS_QUEUE) });
  const sweeper = new Sweeper({
    redis,
    watermarkKey,
    shards: config.streamShards,
    holdWallMs: cfg.lifecycle.holdWallSeconds * 1000,
    sweepSeconds: cfg.worker.sweepSeconds,
    eventsQueue,
    service,
    activeCounts: () => store.activeCounts(),
    activeGauge: m.active,
    log,
  });
  sweeper.start();
  const stats = writer === null ? undefined : alertsPipelineStats(writer, config.instance, totals, log);

  log.info({ webhooks: [...targets.keys()], routes: cfg.routes.length, keyPrefix }, 'alerts started');

  const close = once(() =>
    closeAlerts({
      sweeper,
      stats,
      workers,
      dispatcher,
      queues: { notifyQueue, eventsQueue },
      writer,
      influx,
      connections: { redis, outboxRedis },
      log,
    }),
  );
  return { service, store, sweepNow: () => sweeper.sweepNow(), close };
}
