import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Compile } from 'typebox/compile';
import { BILLING_JOBS, BILLING_QUEUE, CloseDayJob, CloseMonthJob, ClosePeriodJob, RecomputeJob } from '../contracts/billing.js';
import { BillingConfig } from '../contracts/config-billing.js';
import { InsightsConfig } from '../contracts/config-insights.js';
import { RegistryConfig } from '../contracts/config-registry.js';
import { TariffsConfigSchema } from '../contracts/config-tariffs.js';
import type { TariffsConfig } from '../contracts/config-tariffs.js';
import { compileTiers } from '../domain/profiles.js';
import { compileTariffOffers } from '../domain/tariff-pricing.js';
import { compileTariffs, type Tariffs } from '../domain/tariffs.js';
import { loadSection } from '../shared/config.js';
import { createInflux, type Influx, type LineWriter } from '../shared/influx.js';
import type { Logger } from '../shared/logger.js';
import { Counter, Histogram, metric, type Registry } from '../shared/metrics.js';
import { closeRedis, createRedis, influxQuarantine, queuePrefix, type RedisClient } from '../shared/redis.js';
import { RegistryStore } from '../shared/registry.js';
import { once, type RoleContext, type RoleHandle } from '../shared/role.js';
import { BillingCloser, type CloseResult } from './closer.js';
import { influxBillingSource } from './source.js';
import { redisBillingState } from './state.js';

export interface BillingHandle extends RoleHandle {
  readonly closer: BillingCloser;
  readonly queue: Queue;
}

export interface BillingOptions {
  /** Base of the queue's BullMQ key prefix (`<base>:{billing}`, default `mf`); tests use a unique one. */
  prefix?: string;
  /** Sections already loaded (tests tune them); default: config/billing.yaml and config/tariffs.yaml. */
  billing?: BillingConfig;
  tariffs?: TariffsConfig;
  /** Default: config/insights.yaml. */
  insights?: InsightsConfig;
}

const checkCloseDay = Compile(CloseDayJob);
const checkClosePeriod = Compile(ClosePeriodJob);
const checkRecompute = Compile(RecomputeJob);
const checkCloseMonth = Compile(CloseMonthJob);

function parse<T>(check: { Check(v: unknown): v is T }, job: Job): T {
  if (!check.Check(job.data)) throw new UnrecoverableError(`billing job ${job.name} ${job.id ?? ''}: malformed data`);
  return job.data;
}

/** Jobs run by outcome, reads written and job durations. */
function billingMetrics(registry: Registry) {
  const jobsRun = metric(
    registry,
    'meterflow_billing_jobs_total',
    () =>
      new Counter({
        name: 'meterflow_billing_jobs_total',
        help: 'Billing jobs run, by name and outcome',
        labelNames: ['job', 'outcome'],
        registers: [registry],
      }),
  );
  const readsWritten = metric(
    registry,
    'meterflow_billing_reads_written_total',
    () =>
      new Counter({
        name: 'meterflow_billing_reads_written_total',
        help: 'Daily and period reads and customer profiles written to InfluxDB',
        labelNames: ['job'],
        registers: [registry],
      }),
  );
  const jobSeconds = metric(
    registry,
    'meterflow_billing_job_seconds',
    () =>
      new Histogram({
        name: 'meterflow_billing_job_seconds',
        help: 'Billing job duration',
        labelNames: ['job'],
        registers: [registry],
        buckets: [0.01, 0.1, 0.5, 1, 5, 15, 60, 300],
      }),
  );
  return { jobsRun, readsWritten, jobSeconds };
}

type Metrics = ReturnType<typeof billingMetrics>;

interface CloserParts {
  cfg: BillingConfig;
  tariffs: Tariffs;
  tariffsCfg: TariffsConfig;
  insights: InsightsConfig;
  redis: RedisClient;
  influx: Influx;
  writer: LineWriter;
  registry: RegistryStore;
  queue: Queue;
  log: Logger;
}

/** The closer over InfluxDB, the billing state in Redis and the registry; its close-day and close-period jobs go on `queue`. */
function createCloser(p: CloserParts): BillingCloser {
  const { cfg, queue } = p;
  const closeOpts = {
    attempts: cfg.worker.attempts,
    backoff: { type: 'exponential', delay: cfg.worker.backoffMs },
    // Removed either way: the tick re-schedules a day or period that is still open.
    removeOnComplete: true,
    removeOnFail: true,
  };
  return new BillingCloser({
    source: influxBillingSource(p.influx),
    writer: p.writer,
    state: redisBillingState(p.redis),
    meters: {
      allMeterIds: async () => (await p.registry.allMeters()).map((m) => m.meterId),
      getMeters: (ids) => p.registry.getMeters(ids),
    },
    tariffs: p.tariffs,
    cfg,
    log: p.log,
    now: () => Date.now(),
    async enqueueCloseDay(job) {
      await queue.add(BILLING_JOBS.closeDay, job, { ...closeOpts, jobId: `close-day|${job.timezone}|${job.day}` });
    },
    async enqueueClosePeriod(job) {
      await queue.add(BILLING_JOBS.closePeriod, job, { ...closeOpts, jobId: `close-period|${job.timezone}|${job.period}` });
    },
    insights: {
      // Checked at start: a bad tier list or price fails here with the key's path.
      tiers: compileTiers(p.insights.segments),
      offers: compileTariffOffers(p.tariffsCfg, p.tariffs),
      async enqueueCloseMonth(job) {
        // One job id per month: a late-data re-close waiting behind another is the same job. Prioritized (BullMQ runs
        // jobs without a priority first): day closes and late-data recomputes, which billing invoices, never wait
        // behind a month's profiles.
        await queue.add(BILLING_JOBS.closeMonth, job, { ...closeOpts, jobId: `close-month|${job.timezone}|${job.month}`, priority: 10 });
      },
    },
  });
}

/** The `billing` queue's processor: each job, timed, into the closer by its name; a malformed or unknown job is not retried. */
function jobProcessor(closer: BillingCloser, m: Metrics): (job: Job) => Promise<{ scheduled: Awaited<ReturnType<BillingCloser['tick']>> } | CloseResult> {
  return async (job) => {
    const stop = m.jobSeconds.startTimer({ job: job.name });
    try {
      switch (job.name) {
        case BILLING_JOBS.tick:
          return { scheduled: await closer.tick() };
        case BILLING_JOBS.closeDay: {
          const r = await closer.closeDay(parse(checkCloseDay, job));
          m.readsWritten.inc({ job: job.name }, r.written);
          return r;
        }
        case BILLING_JOBS.closePeriod: {
          const r = await closer.closePeriod(parse(checkClosePeriod, job));
          m.readsWritten.inc({ job: job.name }, r.written);
          return r;
        }
        case BILLING_JOBS.closeMonth: {
          const r = await closer.closeMonth(parse(checkCloseMonth, job));
          m.readsWritten.inc({ job: job.name }, r.written);
          return r;
        }
        case BILLING_JOBS.recompute: {
          const r = await closer.recompute(parse(checkRecompute, job));
          m.readsWritten.inc({ job: job.name }, r.written);
          return r;
        }
        default:
          throw new UnrecoverableError(`unknown billing job "${job.name}"`);
      }
    } finally {
      stop();
    }
  };
}

/** The BullMQ worker on `billing`, counting jobs by outcome. */
function startWorker(closer: BillingCloser, queueOpts: { connection: RedisClient; prefix: string }, concurrency: number, m: Metrics, log: Logger): Worker {
  const worker = new Worker(BILLING_QUEUE, jobProcessor(closer, m), { ...queueOpts, concurrency });
  worker.on('completed', (job) => m.jobsRun.inc({ job: job.name, outcome: 'completed' }));
  worker.on('failed', (job, err) => {
    m.jobsRun.inc({ job: job?.name ?? 'unknown', outcome: 'failed' });
    log.warn({ err, job: job?.name, jobId: job?.id, attempts: job?.attemptsMade }, 'billing job failed');
  });
  worker.on('error', (err) => log.error({ err }, 'billing worker error'));
  return worker;
}

/** The repeatable `tick` that closes what the watermark has passed. */
async function scheduleTick(queue: Queue, everyMs: number): Promise<void> {
  await queue.upsertJobScheduler(
    'billing-tick',
    { every: everyMs },
    {
      name: BILLING_JOBS.tick,
      data: {},
      opts: { removeOnComplete: true, removeOnFail: 100 },
    },
  );
}

interface Closing {
  worker: Worker;
  queue: Queue;
  writer: LineWriter;
  influx: Influx;
  redis: RedisClient;
  log: Logger;
}

async function closeBilling(c: Closing): Promise<void> {
  // Stop taking jobs and let the running one finish (it flushes its own writes), then close in reverse order.
  await c.worker.close();
  await c.queue.close();
  await c.writer.close();
  await c.influx.close();
  await closeRedis(c.redis);
  c.log.info('billing stopped');
}

/**
 * The billing role: a BullMQ worker on the `billing` queue. A repeatable `tick` closes each local day once
 * the stream watermark has passed it (then the period after its last day); `recompute` jobs from the stream
 * worker rewrite a meter's day, and its period if closed, when late data lands. After the last day of a calendar month
 * a `close-month` job writes every customer's profile of that month (src/billing/month-close.ts).
 */
export async function startBilling(ctx: RoleContext, opts: BillingOptions = {}): Promise<BillingHandle> {
  const { config } = ctx;
  const log = ctx.log.child({ component: 'billing' });
  const cfg = opts.billing ?? loadSection('billing', BillingConfig);
  const registryCfg = loadSection('registry', RegistryConfig);
  const tariffsCfg = opts.tariffs ?? loadSection('tariffs', TariffsConfigSchema);
  const tariffs = compileTariffs(tariffsCfg, config.timezone);
  const insights = opts.insights ?? loadSection('insights', InsightsConfig);
  const m = billingMetrics(ctx.metrics);

  const redis = createRedis(config.redis, 'meterflow-billing');
  const influx = await createInflux(config.influx, log);
  await influx.ensureDatabase();
  const writer = influx.writer({ batchSize: 5000, flushMs: 200, quarantine: influxQuarantine(redis, `billing:${config.instance}`, 100_000) });
  const registry = new RegistryStore(redis, registryCfg.defaults);
  const queueOpts = { connection: redis, prefix: queuePrefix(BILLING_QUEUE, opts.prefix) };
  const queue = new Queue(BILLING_QUEUE, queueOpts);
  const closer = createCloser({ cfg, tariffs, tariffsCfg, insights, redis, influx, writer, registry, queue, log });
  const worker = startWorker(closer, queueOpts, cfg.worker.concurrency, m, log);

  await scheduleTick(queue, cfg.close.everyMs);
  log.info({ timezones: [...new Set([...tariffs.byName.values()].map((t) => t.timezone))], everyMs: cfg.close.everyMs }, 'billing started');

  const close = once(() => closeBilling({ worker, queue, writer, influx, redis, log }));
  return { closer, queue, close };
}
