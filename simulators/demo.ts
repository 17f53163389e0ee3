import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { createAlertService } from '../src/alerting/service.js';
import type { AlertStore } from '../src/alerting/store.js';
import type { AlertRecord, AlertState } from '../src/contracts/alert.js';
import { AlertsConfig } from '../src/contracts/config-alerts.js';
import { RegistryConfig } from '../src/contracts/config-registry.js';
import { ROLES, startRoles } from '../src/roles.js';
import { isSet, loadConfigWith, loadSection, type AppConfig } from '../src/shared/config.js';
import { createLogger, type Logger } from '../src/shared/logger.js';
import { createMetrics, type Registry } from '../src/shared/metrics.js';
import { closeRedis, createRedis } from '../src/shared/redis.js';
import { RegistryStore } from '../src/shared/registry.js';
import { freePort, portAnswers, startInfluxd, startMosquitto, startRedis, type LocalService } from './services.js';
import { runSimulation, type SimProgress } from './publish.js';
import { loadScenario } from './scenario.js';

const DEFAULT_SCENARIO = new URL('./scenarios/demo.yaml', import.meta.url).pathname;

type Values = Array<MetricValue<string>>;

/** Sum of a metric's samples whose labels match `where`. */
function total(values: Map<string, Values>, name: string, where: Record<string, string> = {}): number {
  let sum = 0;
  for (const v of values.get(name) ?? []) {
    if (Object.entries(where).every(([k, want]) => String(v.labels[k] ?? '') === want)) sum += v.value;
  }
  return sum;
}

/** Samples of a metric summed per value of `label`, largest first. */
function byLabel(values: Map<string, Values>, name: string, label: string, where: Record<string, string> = {}): Array<[string, number]> {
  const out = new Map<string, number>();
  for (const v of values.get(name) ?? []) {
    if (!Object.entries(where).every(([k, want]) => String(v.labels[k] ?? '') === want)) continue;
    const key = String(v.labels[label] ?? '?');
    out.set(key, (out.get(key) ?? 0) + v.value);
  }
  return [...out].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
}

async function snapshot(metrics: Registry): Promise<Map<string, Values>> {
  const all = (await metrics.getMetricsAsJSON()) as Array<MetricObjectWithValues<MetricValue<string>>>;
  return new Map(all.map((m) => [m.name, m.values]));
}

const n = (x: number): string => Math.round(x).toLocaleString('en-US');
const hhmmss = (ms: number): string => new Date(ms).toISOString().slice(11, 19);

function bar(frac: number, width = 24): string {
  const f = Math.max(0, Math.min(1, frac));
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${(f * 100).toFixed(0).padStart(3)}%`;
}

/** The alerts the store holds so far (any state), by type, and each outage with its state. */
export interface AlertsSeen {
  byType: Array<[string, number]>;
  outages: Array<{ transformerId: string; state: AlertState; meters: number; startedAt: number; restoredAt: number | null }>;
}

export function summariseAlerts(alerts: readonly AlertRecord[]): AlertsSeen {
  const byType = new Map<string, number>();
  for (const a of alerts) byType.set(a.type, (byType.get(a.type) ?? 0) + 1);
  const outages = alerts
    .filter((a) => a.type === 'outage')
    .map((a) => ({
      transformerId: a.outage?.transformerId ?? a.subject,
      state: a.state,
      meters: a.outage?.metersAffected ?? 0,
      startedAt: a.outage?.startedAt ?? a.firstSeen,
      restoredAt: a.outage?.restoredAt ?? (a.state === 'resolved' ? a.resolvedAt : null),
    }))
    .sort((x, y) => x.startedAt - y.startedAt);
  return { byType: [...byType].sort((x, y) => y[1] - x[1] || x[0].localeCompare(y[0])), outages };
}

/** Every alert in the store (the demo's few hundred), newest first. */
async function allAlerts(store: AlertStore): Promise<AlertRecord[]> {
  const out: AlertRecord[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list({}, 500, cursor);
    out.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined && out.length < 5000);
  return out;
}

const hhmm = (ms: number): string => new Date(ms).toISOString().slice(11, 16);

function alertsLine(seen: AlertsSeen | undefined): string {
  if (seen === undefined || seen.byType.length === 0) return 'none yet';
  const types = seen.byType.map(([k, v]) => `${k} ${n(v)}`).join(', ');
  const outages = seen.outages.map((o) => {
    const what = `outage ${o.transformerId} (${n(o.meters)} meters)`;
    return o.restoredAt === null ? `${what} open since ${hhmm(o.startedAt)} UTC` : `${what} open ${hhmm(o.startedAt)} → restored ${hhmm(o.restoredAt)} UTC`;
  });
  return [types, ...outages].join('   ');
}

export interface DemoView {
  sim: SimProgress | undefined;
  /** From the alert store, refreshed with the view. */
  alerts?: AlertsSeen;
  from: number;
  to: number;
  started: number;
  meters: number;
  scenario: string;
  timezone: string;
  links: string[];
}

/** The live status block (pure: metrics and progress in, lines out). */
export function renderDemo(
  view: DemoView,
  values: Map<string, Values>,
  prevIngested: number,
  dtSec: number,
  now: number,
): { lines: string[]; ingested: number } {
  const ingested = total(values, 'meterflow_ingest_readings_total', { result: 'accepted' });
  const rate = dtSec > 0 ? Math.max(0, ingested - prevIngested) / dtSec : 0;
  const sim = view.sim;
  const simFrac = sim ? (sim.simTime - view.from) / Math.max(1, view.to - view.from) : 0;
  const anomalies = byLabel(values, 'meterflow_stream_events_total', 'type', { status: 'firing' });
  const notes = byLabel(values, 'meterflow_alert_notifications_total', 'result');
  const lines = [
    `meterflow demo — ${view.meters} meters, scenario ${view.scenario} (${view.timezone})   running ${hhmmss(now - view.started)}   Ctrl-C stops`,
    `simulated time  ${sim ? new Date(sim.simTime).toISOString().slice(0, 16).replace('T', ' ') : '…'} UTC ${bar(simFrac)}${sim?.done ? '  (fleet done)' : ''}`,
    `published       ${n(sim?.readings ?? 0)} readings, ${n(sim?.duplicates ?? 0)} duplicates, ${n(sim?.malformed ?? 0)} malformed, ${n(sim?.events ?? 0)} meter events`,
    `ingest          ${n(rate).padStart(7)} readings/s   accepted ${n(ingested)}   duplicates ${n(total(values, 'meterflow_ingest_readings_total', { result: 'duplicate' }))}   rejected ${n(total(values, 'meterflow_ingest_rejected_total'))} (dead-lettered)`,
    `stream worker   processed ${n(total(values, 'meterflow_stream_readings_total'))} readings   ${byLabel(values, 'meterflow_stream_readings_total', 'outcome')
      .map(([k, v]) => `${k} ${n(v)}`)
      .join(', ')}`,
    `anomalies       ${anomalies.length ? anomalies.map(([k, v]) => `${k} ${n(v)}`).join(', ') : 'none yet'}`,
    `alerts          active ${n(total(values, 'meterflow_alerts_active', { suppressed: 'false' }))} (+${n(total(values, 'meterflow_alerts_active', { suppressed: 'true' }))} covered by outages)   events handled ${n(total(values, 'meterflow_alert_events_total'))}   notifications ${notes.length ? notes.map(([k, v]) => `${k} ${n(v)}`).join(', ') : '0'}`,
    `alerts by type  ${alertsLine(view.alerts)}`,
    `billing reads   ${
      byLabel(values, 'meterflow_billing_reads_written_total', 'job')
        .map(([k, v]) => `${k} ${n(v)}`)
        .join(', ') || 'none yet (days close as the watermark passes them)'
    }`,
    ...view.links,
  ];
  return { lines, ingested };
}

/**
 * `meterflow demo`: private Redis and Mosquitto (and InfluxDB unless one answers at INFLUX_URL), every role in
 * this process, the demo scenario published over MQTT, and a live view until Ctrl-C (or --duration).
 */
export async function runDemo(argv: string[], baseConfig: AppConfig, cliLog: Logger): Promise<void> {
  const { values: opts } = parseArgs({
    args: argv,
    strict: true,
    options: {
      meters: { type: 'string' },
      speed: { type: 'string' },
      scenario: { type: 'string' },
      duration: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (opts.help) {
    process.stdout.write('meterflow demo [--meters N] [--speed X] [--scenario FILE] [--duration SECONDS] [--out DIR]\n');
    return;
  }
  const num = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!Number.isFinite(x) || x <= 0) throw new Error(`--${flag}: expected a positive number, got "${v}"`);
    return x;
  };
  const meters = num('meters', opts.meters);
  const speed = num('speed', opts.speed);
  const duration = num('duration', opts.duration);
  const scenarioPath = opts.scenario ?? DEFAULT_SCENARIO;
  const scenario = loadScenario(scenarioPath, meters === undefined ? {} : { meters });
  const outDir = opts.out ?? mkdtempSync(join(tmpdir(), 'meterflow-demo-'));
  const out = process.stdout;
  const say = (m: string): void => void out.write(`${m}\n`);

  say(`meterflow demo: starting services (logs: ${join(outDir, 'meterflow.log')})`);
  // Private Redis and Mosquitto: a demo must not mix its meters' state with whatever else is there. In their own
  // process groups, so Ctrl-C reaches only the demo, which stops them after the roles.
  const started: LocalService[] = [];
  const stopServices = async (): Promise<void> => {
    for (const s of started.reverse()) await s.destroy().catch(() => undefined);
  };
  try {
    const redis = await startRedis({ ownGroup: true });
    started.push(redis);
    const mqtt = await startMosquitto({ ownGroup: true });
    started.push(mqtt);
    let influxUrl = baseConfig.influx.url;
    let influxNote = `InfluxDB ${influxUrl} (database/bucket ${baseConfig.influx.bucket})`;
    const answers = await fetch(`${influxUrl}/ping`).then(
      (r) => r.status === 204,
      () => false,
    );
    if (!answers) {
      const influx = await startInfluxd({ log: say, ownGroup: true });
      started.push(influx);
      influxUrl = influx.url;
      influxNote = `InfluxDB ${influxUrl} (private influxd, database ${baseConfig.influx.bucket}; stops with the demo)`;
    }
    say(`  redis ${redis.url}   mosquitto ${mqtt.url}   influxdb ${influxUrl}`);

    const token = isSet('API_TOKENS') ? undefined : `demo-${randomBytes(12).toString('hex')}`;
    const apiPort =
      baseConfig.api.port !== 0 && (isSet('API_PORT') || !(await portAnswers('127.0.0.1', baseConfig.api.port))) ? baseConfig.api.port : await freePort();
    const config = loadConfigWith({
      REDIS_URL: redis.url,
      // The private Redis, not a cluster the environment may name.
      REDIS_CLUSTER_NODES: '',
      MQTT_URL: mqtt.url,
      INFLUX_URL: influxUrl,
      API_PORT: String(apiPort),
      MF_TIMEZONE: isSet('MF_TIMEZONE') ? baseConfig.timezone : scenario.timezone,
      ...(token ? { API_TOKENS: JSON.stringify({ [token]: ['admin'] }) } : {}),
    });
    const logFile = createWriteStream(join(outDir, 'meterflow.log'), { flags: 'a' });
    const log = createLogger({ level: config.logLevel, destination: logFile });
    const metrics = createMetrics();
    const closeRoles = await startRoles(ROLES, { config, log, metrics });

    const registryRedis = createRedis(config.redis.url, 'meterflow-demo');
    const registry = new RegistryStore(registryRedis, loadSection('registry', RegistryConfig).defaults);
    const { store: alertStore } = createAlertService(registryRedis, registry, loadSection('alerts', AlertsConfig), config.streamShards, log);
    const abort = new AbortController();
    const view: DemoView = {
      sim: undefined,
      from: scenario.fromMs,
      to: scenario.toMs,
      started: Date.now(),
      meters: scenario.fleet.meters,
      scenario: scenario.name,
      timezone: config.timezone,
      links: [
        `API             http://127.0.0.1:${apiPort}/docs   ${token ? `token ${token} (admin)` : 'tokens from API_TOKENS'}`,
        `console         http://127.0.0.1:${apiPort}/console/   (log in with the API token)`,
        `try             curl -H 'Authorization: Bearer ${token ?? '<token>'}' http://127.0.0.1:${apiPort}/api/v1/alerts`,
        `data            ${influxNote}; Grafana: docker compose up (see README); files in ${outDir}`,
      ],
    };
    // The addresses once up front as well: the status block below redraws in place.
    say(
      `  API      http://127.0.0.1:${apiPort}/docs\n  console  http://127.0.0.1:${apiPort}/console/   ${token ? `token ${token}` : '(log in with a token from API_TOKENS)'}`,
    );
    const simulation = runSimulation({
      scenario,
      mqttUrl: mqtt.url,
      outDir,
      ...(speed === undefined ? {} : { speed }),
      signal: abort.signal,
      onFleet: async (fleet) => {
        await registry.upsertMeters(fleet.customers);
        await registry.upsertTransformers(fleet.transformers);
      },
      onProgress: (p) => {
        view.sim = p;
      },
    });
    let stopping = false;
    let stop: () => void = () => undefined;
    const stopped = new Promise<void>((resolve) => {
      stop = () => {
        stopping = true;
        resolve();
      };
    });
    let simError: string | undefined;
    const simDone = simulation.then(
      (s) => {
        log.info({ summary: s }, 'simulation finished');
      },
      (err: unknown) => {
        log.error({ err }, 'simulation failed');
        simError = err instanceof Error ? err.message : String(err);
        stop();
      },
    );
    // A second Ctrl-C does not wait for a clean stop: exit now (the services die with the process).
    const force = (): void => {
      say('\nforced stop');
      process.exit(130);
    };
    const onSignal = (): void => {
      stop();
      process.once('SIGINT', force);
      process.once('SIGTERM', force);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    if (duration !== undefined) setTimeout(stop, duration * 1000).unref();

    const tty = out.isTTY === true;
    let prevIngested = 0;
    let prevAt = Date.now();
    let drawn = 0;
    let lastPlain = 0;
    const draw = async (): Promise<void> => {
      view.alerts = await allAlerts(alertStore).then(summariseAlerts, (err: unknown) => {
        log.warn({ err }, 'demo: alert store read failed');
        return view.alerts;
      });
      const now = Date.now();
      const { lines, ingested } = renderDemo(view, await snapshot(metrics), prevIngested, (now - prevAt) / 1000, now);
      prevIngested = ingested;
      prevAt = now;
      if (tty) {
        out.write(`${drawn ? `\x1b[${drawn}F` : ''}${lines.map((l) => `\x1b[2K${l}`).join('\n')}\n`);
        drawn = lines.length;
      } else if (now - lastPlain >= 5000 || stopping) {
        lastPlain = now;
        say(lines.join('\n'));
      }
    };
    // One draw at a time: a slow alert-store read must not interleave two blocks.
    let drawing: Promise<void> | undefined;
    const ticker = setInterval(() => {
      drawing ??= draw()
        .catch((err: unknown) => log.warn({ err }, 'demo: status draw failed'))
        .finally(() => {
          drawing = undefined;
        });
    }, 1000);
    await stopped;
    clearInterval(ticker);
    await drawing;
    await draw();
    say('\nstopping: simulator, roles, services …');
    abort.abort();
    await simDone;
    await closeRoles();
    await closeRedis(registryRedis);
    await new Promise<void>((r) => logFile.end(r));
    for (const f of [onSignal, force]) {
      process.removeListener('SIGINT', f);
      process.removeListener('SIGTERM', f);
    }
    await stopServices();
    if (simError !== undefined) throw new Error(`simulation failed: ${simError}`);
    say(`stopped cleanly. Files kept in ${outDir}`);
  } catch (err) {
    await stopServices();
    cliLog.debug({ err }, 'demo failed');
    throw err;
  }
}
