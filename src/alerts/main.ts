import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { Compile } from 'typebox/compile';
import { DetectionEventPayload, EVENTS_QUEUE, NOTIFY_QUEUE } from '../contracts/alert.js';
import { AlertsConfig } from '../contracts/config-alerts.js';
import { RegistryConfig } from '../contracts/config-registry.js';
import { loadSection, secretEnv, type Env } from '../shared/config.js';
import { createInflux, type Influx, type LineWriter } from '../shared/influx.js';
import { int, lp } from '../shared/line-protocol.js';
import { Counter, Gauge, metric } from '../shared/metrics.js';
import { closeRedis, createRedis, influxQuarantine, keys as sharedKeys } from '../shared/redis.js';
import { RegistryStore } from '../shared/registry.js';
import { once, type RoleContext, type RoleHandle } from '../shared/role.js';
import { Dispatcher, notifyBackoff } from './dispatcher.js';
import { notifyProcessor } from './notifier.js';
import { type AlertService, CaughtUpWatermarks, createAlertService, parseWatermarks, type SweepStats } from '../shared/alerts/service.js';
import { routingConfig, webhookTargets } from '../shared/alerts/settings.js';
import type { AlertStore } from '../shared/alerts/store.js';
import { statsLoop } from '../shared/stats.js';

export interface AlertsOptions {
  /** Section already loaded (tests tune it); default config/alerts.yaml (+ MF_CONFIG). */
  alerts?: AlertsConfig;
  /** Where webhook secrets are read from (the variables named by `secretEnv`). Default: the process environment. */
  env?: Env;
  /** Prefix of the alert keys (`<prefix>:{alerts}:…`) and of the watermark hash; tests use a unique one. */
  keyPrefix?: string;
  /** BullMQ key prefix; tests use a unique one. */
  queuePrefix?: string;
}

export interface AlertsHandle extends RoleHandle {
  readonly service: AlertService;
  readonly store: AlertStore;
  /** Runs one sweep now (tests; the role also runs it every `worker.sweepSeconds`). */
  sweepNow(): Promise<SweepStats>;
}

const checkEvent = Compile(DetectionEventPayload);

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
  const bull = opts.queuePrefix === undefined ? {} : { prefix: opts.queuePrefix };

  const m = {
    events: metric(
      ctx.metrics,
      'meterflow_alert_events_total',
      () =>
        new Counter({
          name: 'meterflow_alert_events_total',
          help: 'Detection events handled by the alert service',
          labelNames: ['outcome'],
          registers: [ctx.metrics],
        }),
    ),
    conflicts: metric(
      ctx.metrics,
      'meterflow_alert_conflicts_total',
      () =>
        new Counter({
          name: 'meterflow_alert_conflicts_total',
          help: 'Alert commits that lost a race and were retried',
          registers: [ctx.metrics],
        }),
    ),
    notifications: metric(
      ctx.metrics,
      'meterflow_alert_notifications_total',
      () =>
        new Counter({
          name: 'meterflow_alert_notifications_total',
          help: 'Webhook deliveries by result',
          labelNames: ['result'],
          registers: [ctx.metrics],
        }),
    ),
    active: metric(
      ctx.metrics,
      'meterflow_alerts_active',
      () =>
        new Gauge({
          name: 'meterflow_alerts_active',
          help: 'Alerts not resolved',
          registers: [ctx.metrics],
        }),
    ),
  };
  const totals = { events: 0, changes: 0, delivered: 0, retries: 0, dead: 0 };

  const redis = createRedis(config.redis.url, 'meterflow-alerts');
  const outboxRedis = createRedis(config.redis.url, 'meterflow-alerts-outbox');
  let influx: Influx | undefined;
  let writer: LineWriter | null = null;
  if (cfg.influx.enabled) {
    influx = await createInflux(config.influx, log);
    await influx.ensureDatabase();
    writer = influx.writer({ batchSize: 1000, flushMs: 1000, quarantine: influxQuarantine(redis, `alerts:${config.instance}`, 100_000) });
  }

  const { store, service } = createAlertService(redis, new RegistryStore(redis, registryCfg.defaults), cfg, config.streamShards, log, {
    keyPrefix,
    onConflict: () => m.conflicts.inc(),
  });

  const notifyQueue = new Queue(NOTIFY_QUEUE, { connection: redis, ...bull });
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

  const lock = { lockDuration: cfg.worker.lockSeconds * 1000, stalledInterval: cfg.worker.lockSeconds * 1000 };
  const eventsWorker = new Worker(
    EVENTS_QUEUE,
    async (job) => {
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
    },
    { connection: redis, concurrency: cfg.worker.eventsConcurrency, ...lock, ...bull },
  );
  const notifyWorker = new Worker(
    NOTIFY_QUEUE,
    notifyProcessor({
      targets,
      timeoutMs: cfg.notify.timeoutMs,
      store,
      log: log.child({ component: 'alerts-notify' }),
      onResult: (r) => {
        m.notifications.inc({ result: r });
        if (r === 'delivered') totals.delivered++;
        else if (r === 'retry') totals.retries++;
        else totals.dead++;
      },
    }),
    { connection: redis, concurrency: cfg.notify.concurrency, settings: { backoffStrategy: notifyBackoff(cfg.notify) }, ...lock, ...bull },
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

  let sweeping: Promise<SweepStats> | undefined;
  let ticks = 0;
  const eventsQueue = new Queue(EVENTS_QUEUE, { connection: redis, ...bull });
  const caughtUp = new CaughtUpWatermarks(config.streamShards, cfg.lifecycle.holdWallSeconds * 1000);
  /** Enqueue time of the oldest event job not done yet (the wait list is FIFO; active jobs are few). */
  async function oldestPendingEvent(): Promise<number | null> {
    const jobs = await eventsQueue.getJobs(['active'], 0, -1);
    jobs.push(...(await eventsQueue.getJobs(['wait'], 0, 0, true)));
    const times = jobs.map((j) => j.timestamp).filter((t) => Number.isFinite(t));
    return times.length === 0 ? null : Math.min(...times);
  }
  async function sweepNow(): Promise<SweepStats> {
    const at = Date.now();
    const read = parseWatermarks(await redis.hgetall(watermarkKey), config.streamShards);
    const wm = caughtUp.next(at, read, await oldestPendingEvent());
    const stats = await service.sweep(wm);
    if (ticks++ % 720 === 0) stats.deleted = await service.retention(wm);
    m.active.set(await redis.zcard(store.keys.active));
    return stats;
  }
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const schedule = (): void => {
    timer = setTimeout(() => {
      sweeping = sweepNow();
      sweeping
        .catch((err: unknown) => log.error({ err }, 'alert sweep failed'))
        .finally(() => {
          sweeping = undefined;
          if (!stopped) schedule();
        });
    }, cfg.worker.sweepSeconds * 1000);
  };
  schedule();

  // Pipeline-health points for the dashboard, every 10 s.
  let prev = { ...totals };
  const stats =
    writer === null
      ? undefined
      : statsLoop(
          10,
          log,
          () => {
            const lines = [
              lp(
                'pipeline',
                { role: 'alerts', instance: config.instance },
                {
                  events: int(totals.events - prev.events),
                  alert_changes: int(totals.changes - prev.changes),
                  notifications: int(totals.delivered - prev.delivered),
                  notify_retries: int(totals.retries - prev.retries),
                  notify_dead: int(totals.dead - prev.dead),
                },
                Date.now(),
              ),
            ];
            prev = { ...totals };
            return lines;
          },
          (lines) => writer?.write(lines),
        );

  log.info({ webhooks: [...targets.keys()], routes: cfg.routes.length, keyPrefix }, 'alerts started');

  const close = once(async () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    stats?.stop();
    // Stop taking work; in-flight jobs finish (BullMQ waits for them).
    await Promise.all([eventsWorker.close(), notifyWorker.close()]);
    await sweeping?.catch(() => undefined);
    await dispatcher.stop();
    await notifyQueue.close();
    await eventsQueue.close();
    await writer?.close();
    await influx?.close();
    await closeRedis(outboxRedis);
    await closeRedis(redis);
    log.info('alerts stopped');
  });
  return { service, store, sweepNow, close };
}
