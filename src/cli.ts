import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { RegistryConfig } from './contracts/config-registry.js';
import { parseCustomersCsv, parseTransformersCsv, type CsvRowError } from './contracts/registry-csv.js';
import { loadConfig, loadSection, type AppConfig } from './shared/config.js';
import { ConfigError } from './shared/errors.js';
import { createLogger, type Logger } from './shared/logger.js';
import { createMetrics } from './shared/metrics.js';
import { closeRedis, createRedis } from './shared/redis.js';
import { RegistryStore } from './shared/registry.js';
import type { RoleContext, RoleHandle } from './shared/role.js';
import { onShutdown } from './shared/shutdown.js';

const HELP = `meterflow — smart-meter pipeline (ingest, stream worker, alerts, billing reads, API)

Usage: meterflow <command> [options]

Roles (each runs until SIGTERM/SIGINT; scale each on its own):
  ingest                      MQTT readings → validated, deduplicated → Redis Streams + InfluxDB
  stream                      stream worker: intervals (VEE), baselines, anomalies, load peaks
  alerts                      alert lifecycle, outage correlation, signed webhook notifications
  billing                     closes days and periods into billing reads (BullMQ "billing")
  api                         HTTP API (alerts, meters, billing reads, remote read), /docs, /metrics
  all                         every role in one process (small sites, the demo)

Tools:
  simulate [options]          publish a simulated meter fleet over MQTT (meterflow simulate --help)
  demo [--meters N]           services up, every role, a simulated fleet, live progress (Ctrl-C stops)
  score --truth FILE          compare alerts with a simulator ground truth
  customers import FILE       load the customer registry CSV
                              (meterId,customerId,class,tariff,contractKw,feederId,transformerId,hasPv,intervalMinutes)
  transformers import FILE    load the transformer registry CSV (transformerId,feederId,ratingKva)

Configuration comes from the environment (MQTT_URL, REDIS_URL, INFLUX_URL, INFLUX_TOKEN, INFLUX_ORG,
INFLUX_BUCKET, INFLUX_API, API_PORT, API_TOKENS, STREAM_SHARDS, WORKER_INDEX, WORKER_COUNT, LOG_LEVEL,
MF_TIMEZONE, MF_CONFIG); thresholds, tariffs and classes from config/*.yaml. See README.md.
`;

type RoleName = 'ingest' | 'stream' | 'alerts' | 'billing' | 'api';
export const ROLES: readonly RoleName[] = ['ingest', 'stream', 'alerts', 'billing', 'api'];

/** Role entry points, loaded on demand so one role's dependencies never slow another's start. */
export async function startRole(name: RoleName, ctx: RoleContext): Promise<RoleHandle> {
  switch (name) {
    case 'ingest':
      return (await import('./ingest/main.js')).startIngest(ctx);
    case 'stream':
      return (await import('./stream/main.js')).startStream(ctx);
    case 'alerts':
      return (await import('./alerts/main.js')).startAlerts(ctx);
    case 'billing':
      return (await import('./billing/main.js')).startBilling(ctx);
    case 'api':
      return (await import('./api/main.js')).startApi(ctx);
  }
}

/** Starts roles in order; on failure closes the ones already started. Returns a closer (reverse order). */
export async function startRoles(names: readonly RoleName[], ctx: RoleContext): Promise<() => Promise<void>> {
  const handles: RoleHandle[] = [];
  try {
    for (const n of names) handles.push(await startRole(n, ctx));
  } catch (err) {
    for (const h of handles.reverse()) await h.close().catch(() => undefined);
    throw err;
  }
  return async () => {
    for (const h of [...handles].reverse()) await h.close();
  };
}

function context(config: AppConfig, log: Logger): RoleContext {
  return { config, log, metrics: createMetrics() };
}

function printCsvErrors(errors: CsvRowError[]): void {
  for (const e of errors.slice(0, 50)) process.stderr.write(`  line ${e.line}: ${e.message}\n`);
  if (errors.length > 50) process.stderr.write(`  … and ${errors.length - 50} more\n`);
}

async function importRegistry(kind: 'customers' | 'transformers', file: string | undefined, config: AppConfig): Promise<number> {
  if (!file) {
    process.stderr.write(`usage: meterflow ${kind} import FILE\n`);
    return 2;
  }
  const text = readFileSync(file, 'utf8');
  const redis = createRedis(config.redis.url, `meterflow-${kind}-import`, { failFast: true });
  try {
    const store = new RegistryStore(redis, loadSection('registry', RegistryConfig).defaults);
    let n: number;
    let errors: CsvRowError[];
    if (kind === 'customers') {
      const parsed = parseCustomersCsv(text);
      n = await store.upsertMeters(parsed.records);
      errors = parsed.errors;
    } else {
      const parsed = parseTransformersCsv(text);
      n = await store.upsertTransformers(parsed.records);
      errors = parsed.errors;
    }
    process.stdout.write(`${kind}: ${n} imported, ${errors.length} rejected from ${file}\n`);
    if (errors.length > 0) {
      printCsvErrors(errors);
      return 1;
    }
    return 0;
  } finally {
    await closeRedis(redis);
  }
}

/** Runs a long-lived set of roles until a signal. */
async function runRoles(names: readonly RoleName[], config: AppConfig, log: Logger): Promise<void> {
  const ctx = context(config, log);
  const close = await startRoles(names, ctx);
  log.info({ roles: names }, 'running');
  onShutdown(log, [close]);
}

export async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(HELP);
    return;
  }
  let config: AppConfig;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`meterflow: configuration error: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
  const log = createLogger({ level: config.logLevel, name: `meterflow-${cmd}` });
  try {
    switch (cmd) {
      case 'ingest':
      case 'stream':
      case 'alerts':
      case 'billing':
      case 'api':
        await runRoles([cmd], config, log);
        return;
      case 'all':
        await runRoles(ROLES, config, log);
        return;
      case 'simulate': {
        const { runSimulateCommand } = await import('../simulators/cli.js');
        await runSimulateCommand(rest, log);
        return;
      }
      case 'demo': {
        const { runDemo } = await import('./demo.js');
        await runDemo(rest, config, log);
        return;
      }
      case 'score': {
        const { runScoreCommand } = await import('../simulators/score-cli.js');
        process.exitCode = await runScoreCommand(rest, config, log);
        return;
      }
      case 'customers':
      case 'transformers': {
        const { positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true });
        if (positionals[0] !== 'import') {
          process.stderr.write(`usage: meterflow ${cmd} import FILE\n`);
          process.exitCode = 2;
          return;
        }
        process.exitCode = await importRegistry(cmd, positionals[1], config);
        return;
      }
      default:
        process.stderr.write(`meterflow: unknown command "${cmd}"\n\n${HELP}`);
        process.exitCode = 2;
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`meterflow: configuration error: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    log.fatal({ err }, 'failed');
    process.exitCode = 1;
    // Connections left open by a failed start must not keep the process alive.
    setTimeout(() => process.exit(1), 500).unref();
  }
}
