import { parseArgs } from 'node:util';
import { loadConfig, type AppConfig } from '../src/shared/config.js';
import type { Logger } from '../src/shared/logger.js';
import { runSimulation, type RunSimulationOptions, type SimProgress, type SimSummary } from './publish.js';
import { ScenarioError } from './scenario.js';
import { isoSeconds, parseDuration, TimeSpecError } from './time-spec.js';

export const SIMULATE_USAGE = `Usage: meterflow simulate [options]

Publishes a simulated meter fleet over MQTT (QoS 1) and writes its registry CSVs, ground truth and ledger.

  --scenario PATH     scenario YAML (simulators/scenarios/{demo,ci,small}.yaml); default: a plain fleet
  --meters N          fleet size (overrides the scenario)
  --interval D        15m, 30m or 1h for every meter (overrides the scenario's mix)
  --from T --to T     ISO-8601 with a zone, now, -2d (before now); --to also +6w (after --from)
  --seed S            same scenario + seed → byte-identical messages
  --batch K           concentrator batches of up to K readings on concentrators/{transformerId}/readings
  --speed X           live: simulated time at X times real time (never ahead of the wall clock)
  --backfill          as fast as the broker acknowledges (the default, unless the scenario sets a speed)
  --timezone Z        IANA zone of the load profiles (overrides the scenario)
  --out DIR           customers.csv, transformers.csv, truth.jsonl, ledger.csv, summary.json (default sim-out)
  --mqtt-url URL      broker (default MQTT_URL); MQTT_USERNAME / MQTT_PASSWORD apply
  --max-in-flight N   QoS 1 publishes awaiting PUBACK (default 1000)
  --no-responder      do not answer on-demand reads on meters/+/commands
  --dry-run           generate, hash and write files without publishing
  -h, --help
`;

export class SimUsageError extends Error {
  override name = 'SimUsageError';
  constructor(
    readonly flag: string,
    message: string,
  ) {
    super(`${flag}: ${message}`);
  }
}

function int(flag: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw.trim())) throw new SimUsageError(flag, `expected an integer from ${min} to ${max}, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new SimUsageError(flag, `expected an integer from ${min} to ${max}, got ${n}`);
  return n;
}

/** `--from -2d` → `--from=-2d`: node:util would take a value starting with "-" for a flag. */
function joinNegativeValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    const next = argv[i + 1];
    if ((a === '--from' || a === '--to') && next !== undefined && /^-\d/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** Flags → runSimulation options (without the broker credentials). Throws SimUsageError naming the bad flag. */
export function parseSimulateArgs(argv: string[]): RunSimulationOptions & { help: boolean } {
  const parse = () =>
    parseArgs({
      args: joinNegativeValues(argv),
      strict: true,
      allowPositionals: false,
      options: {
        scenario: { type: 'string' },
        meters: { type: 'string' },
        interval: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        seed: { type: 'string' },
        batch: { type: 'string' },
        speed: { type: 'string' },
        backfill: { type: 'boolean' },
        timezone: { type: 'string' },
        out: { type: 'string' },
        'mqtt-url': { type: 'string' },
        'max-in-flight': { type: 'string' },
        'no-responder': { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  let values: ReturnType<typeof parse>['values'];
  try {
    ({ values } = parse());
  } catch (err) {
    // node:util names the flag in its message ("Unknown option '--metres'"); keep it, drop the error code.
    const msg = err instanceof Error ? err.message : String(err);
    const flag = /'(-{1,2}[A-Za-z][\w-]*)/.exec(msg)?.[1] ?? 'arguments';
    throw new SimUsageError(flag, msg);
  }
  const opts: RunSimulationOptions & { help: boolean } = { help: values.help === true };
  if (values.speed !== undefined && values.backfill) throw new SimUsageError('--speed', 'choose --speed X (live) or --backfill, not both');
  if (values.speed !== undefined) {
    const speed = Number(values.speed);
    if (!Number.isFinite(speed) || speed <= 0) throw new SimUsageError('--speed', `expected a number above 0, got "${values.speed}"`);
    opts.speed = speed;
  }
  if (values.backfill) opts.backfill = true;
  const meters = int('--meters', values.meters, 1, 10_000_000);
  if (meters !== undefined) opts.meters = meters;
  const batch = int('--batch', values.batch, 0, 10_000);
  if (batch !== undefined) opts.batch = batch;
  const inFlight = int('--max-in-flight', values['max-in-flight'], 1, 65_535);
  if (inFlight !== undefined) opts.maxInFlight = inFlight;
  if (values.interval !== undefined) {
    let minutes: number;
    try {
      minutes = parseDuration(values.interval) / 60_000;
    } catch (err) {
      throw new SimUsageError('--interval', err instanceof Error ? err.message : String(err));
    }
    if (minutes !== 15 && minutes !== 30 && minutes !== 60) throw new SimUsageError('--interval', `expected 15m, 30m or 1h, got "${values.interval}"`);
    opts.interval = values.interval;
  }
  if (values.seed !== undefined) opts.seed = /^\d+$/.test(values.seed) ? Number(values.seed) : values.seed;
  if (values.from !== undefined) opts.from = values.from;
  if (values.to !== undefined) opts.to = values.to;
  if (values.timezone !== undefined) opts.timezone = values.timezone;
  if (values.scenario !== undefined) opts.scenario = values.scenario;
  opts.outDir = values.out ?? 'sim-out';
  if (values['mqtt-url'] !== undefined) {
    try {
      const u = new URL(values['mqtt-url']);
      if (!['mqtt:', 'mqtts:', 'ws:', 'wss:', 'tcp:', 'ssl:'].includes(u.protocol)) throw new Error(`unsupported scheme ${u.protocol}`);
    } catch (err) {
      throw new SimUsageError('--mqtt-url', `expected a broker URL such as mqtt://127.0.0.1:1883 (${err instanceof Error ? err.message : String(err)})`);
    }
    opts.mqttUrl = values['mqtt-url'];
  }
  if (values['no-responder']) opts.respond = false;
  if (values['dry-run']) opts.dryRun = true;
  return opts;
}

/** One status line: messages, readings/s, simulated time. */
export function progressLine(p: SimProgress): string {
  const n = (x: number) => x.toLocaleString('en-US');
  return `simulate: ${n(p.messages)} msgs · ${n(p.readings)} readings · ${n(p.readingsPerSec)} readings/s · sim ${isoSeconds(Math.floor(p.simTime / 60_000) * 60_000)} · ${(p.elapsedMs / 1000).toFixed(1)} s`;
}

export interface SimulateCommandOptions {
  config?: AppConfig;
  signal?: AbortSignal;
  stderr?: NodeJS.WritableStream & { isTTY?: boolean };
  stdout?: NodeJS.WritableStream;
}

/**
 * `meterflow simulate …`: parses the flags, runs the simulation with a live progress line on stderr, and stops
 * cleanly on SIGINT/SIGTERM. Bad flags print a message naming the flag and set exit code 2.
 */
export async function runSimulateCommand(argv: string[], log: Logger, cmd: SimulateCommandOptions = {}): Promise<SimSummary | undefined> {
  const stderr = cmd.stderr ?? process.stderr;
  const stdout = cmd.stdout ?? process.stdout;
  let opts: ReturnType<typeof parseSimulateArgs>;
  try {
    opts = parseSimulateArgs(argv);
  } catch (err) {
    if (!(err instanceof SimUsageError)) throw err;
    stderr.write(`meterflow simulate: ${err.message}\n(see meterflow simulate --help)\n`);
    process.exitCode = 2;
    return undefined;
  }
  if (opts.help) {
    stdout.write(SIMULATE_USAGE);
    return undefined;
  }
  const config = cmd.config ?? loadConfig();
  opts.mqttUrl ??= config.mqtt.url;
  opts.mqttUsername = config.mqtt.username;
  opts.mqttPassword = config.mqtt.password;
  opts.mqttTls = config.mqtt.tls;

  const controller = new AbortController();
  const stop = () => controller.abort();
  cmd.signal?.addEventListener('abort', stop, { once: true });
  if (cmd.signal === undefined) {
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
  const tty = stderr.isTTY === true;
  let lastLine = 0;
  opts.onProgress = (p) => {
    if (tty) stderr.write(`\r${progressLine(p)}\x1b[K`);
    else if (p.elapsedMs - lastLine >= 5000) {
      lastLine = p.elapsedMs;
      stderr.write(`${progressLine(p)}\n`);
    }
  };
  opts.signal = controller.signal;
  const log2 = log.child({ component: 'simulator' });
  try {
    const summary = await runSimulation(opts);
    if (tty) stderr.write('\n');
    stderr.write(`${progressLine(summary)}${summary.aborted ? ' (stopped)' : ''}\nsha256 ${summary.sha256}; files in ${summary.outDir ?? '-'}\n`);
    const { sha256, outDir, mode, meters, readings, duplicates, malformed, events, averageReadingsPerSec, aborted } = summary;
    log2.info({ mode, meters, readings, duplicates, malformed, events, averageReadingsPerSec, sha256, outDir, aborted }, 'simulation finished');
    return summary;
  } catch (err) {
    if (err instanceof ScenarioError || err instanceof TimeSpecError) {
      if (tty) stderr.write('\n');
      stderr.write(`meterflow simulate: ${err.message}\n`);
      process.exitCode = 2;
      return undefined;
    }
    throw err;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    cmd.signal?.removeEventListener('abort', stop);
  }
}
