import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { tokenCommand } from './api/token-command.js';
import { RegistryConfig } from './contracts/config-registry.js';
import { parseCustomersCsv, parseTransformersCsv, type CsvRowError } from './shared/registry-csv.js';
import { ROLES, type RoleName, startRoles } from './roles.js';
import { runCommand } from './shared/command.js';
import { loadSection, type AppConfig } from './shared/config.js';
import type { Logger } from './shared/logger.js';
import { createMetrics } from './shared/metrics.js';
import { closeRedis, createRedis } from './shared/redis.js';
import { RegistryStore } from './shared/registry.js';
import type { RoleContext } from './shared/role.js';
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

Tools (simulators/tools.ts; bin/meterflow.js hands these commands to it):
  simulate [options]          publish a simulated meter fleet over MQTT (meterflow simulate --help)
  demo [--meters N]           services up, every role, a simulated fleet, live progress (Ctrl-C stops)
  score --truth FILE          compare alerts with a simulator ground truth
  customers import FILE       load the customer registry CSV
                              (meterId,customerId,class,tariff,contractKw,feederId,transformerId,hasPv,intervalMinutes)
  transformers import FILE    load the transformer registry CSV (transformerId,feederId,ratingKva)
  token new --scopes S[,S…] [--id NAME]
                              a new API token and its API_TOKENS entry (scrypt hash; the token is shown once)
  token hash                  the API_TOKENS hash of a token read from stdin

Configuration comes from the environment (MQTT_URL, REDIS_URL, REDIS_CLUSTER_NODES, INFLUX_URL, INFLUX_TOKEN,
INFLUX_ORG, INFLUX_BUCKET, INFLUX_API, API_PORT, API_TOKENS, STREAM_SHARDS, WORKER_INDEX, WORKER_COUNT, LOG_LEVEL,
MF_TIMEZONE, MF_CONFIG); thresholds, tariffs and classes from config/*.yaml. See README.md.
`;

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
  const redis = createRedis(config.redis, `meterflow-${kind}-import`, { failFast: true });
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
  if (cmd === 'token') {
    // Needs no configuration: runs where the environment is not set up.
    process.exitCode = await tokenCommand(rest, {
      stdin: process.stdin,
      write: (s) => process.stdout.write(s),
      error: (s) => process.stderr.write(s),
    });
    return;
  }
  await runCommand(cmd, async (config, log) => {
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
  });
}
