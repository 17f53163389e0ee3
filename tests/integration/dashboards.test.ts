import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAlerts } from '../../src/alerts/main.js';
import { startBilling, type BillingHandle } from '../../src/billing/main.js';
import { BillingConfig } from '../../src/contracts/config-billing.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import { startIngest } from '../../src/ingest/main.js';
import { loadSection } from '../../src/shared/config.js';
import { parseQueryResponse, type InfluxSeries } from '../../src/shared/influx.js';
import { closeRedis, createRedis, keys } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import type { RoleHandle } from '../../src/shared/role.js';
import { startStream } from '../../src/stream/main.js';
import { generateFleet } from '../../simulators/fleet.js';
import { runSimulation, type SimSummary } from '../../simulators/publish.js';
import { loadScenario } from '../../simulators/scenario.js';
import {
  expandQuery, loadDashboards, queriesOf, variablesOf, variablesUsed,
  type Dashboard, type PanelQuery, type Range, type VariableValue,
} from '../helpers/grafana-queries.js';
import { memoryLogger, roleContext, serviceEnv } from '../helpers/pipeline.js';
import { startInflux, startMosquitto, startRedis, uniquePrefix, type LocalService } from '../helpers/services.js';

/**
 * Issue 7 item 3: every panel, annotation and variable query of every provisioned dashboard, expanded as Grafana
 * would expand it, runs against a real influxd filled by a short simulated run through the real pipeline
 * (simulator → Mosquitto → ingest → Redis Streams → stream worker → alerts, billing → InfluxDB), and returns at
 * least one series with a non-null value. Exact values are checked against the simulator's ledger and truth.
 */

const DATASOURCE_MIN_INTERVAL = '10s'; // grafana/provisioning/datasources/meterflow.yaml jsonData.timeInterval
const SHARDS = 4;
const MIN = 60_000;
const STEP = 15 * MIN;

// The last three days up to now, so the pipeline's wall-clock points (pipeline, dlq) fall in the same
// "last 3 days" range as the event-time data, as an operator would see them.
const scenario = loadScenario({
  name: 'dashboards',
  // A seed whose silent meter is a critical customer (the simulator keeps outages off critical transformers).
  seed: 1,
  timezone: 'UTC',
  from: '-3d',
  to: 'now',
  batch: 10,
  fleet: {
    meters: 40, feeders: 2, metersPerTransformer: [6, 10], intervalMix: { '15': 1 }, pvShare: 0.2,
    // More critical customers than a real fleet, so an outage is likely to take one down.
    classMix: { residential: 0.65, commercial: 0.1, industrial: 0.05, critical: 0.2 },
  },
  // After the 1-day warm-up set below, so the baseline detectors can fire.
  anomalies: {
    window: { start: '28h', end: '2h' },
    spike: { count: 1, subtleShare: 0 },
    drop: { count: 1, subtleShare: 0, clear: { hours: [26, 30], bypass: [0.1, 0.2] } },
    flatline: { count: 1, subtleShare: 0 },
    reverseFlow: { count: 1, subtleShare: 0 },
    voltage: { count: 1, subtleShare: 0 },
    silent: { count: 1, subtleShare: 0 },
    outage: { count: 1, subtleShare: 0 },
    customerPeak: { count: 1, subtleShare: 0 },
    feederOverload: { count: 1, subtleShare: 0 },
  },
  transport: {
    duplicates: { count: 10 },
    outOfOrder: { count: 4 },
    malformed: { count: 8 },
  },
});

interface LedgerRow { ts: number; importWh: number; published: boolean }

function readLedger(file: string): Map<string, Map<number, LedgerRow>> {
  const out = new Map<string, Map<number, LedgerRow>>();
  for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
    const [meterId, ts, importWh, , published] = line.split(',');
    if (meterId === undefined || meterId === '') continue;
    const rows = out.get(meterId) ?? new Map<number, LedgerRow>();
    rows.set(Number(ts), { ts: Number(ts), importWh: Number(importWh), published: published === '1' });
    out.set(meterId, rows);
  }
  return out;
}

interface Injection { type: string; subject: string; meters: string[]; startMs: number; endMs: number }

/** The fields of the simulator's truth.jsonl this test uses, parsed. */
function readTruth(file: string): Injection[] {
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => {
    const v: unknown = JSON.parse(l);
    const o = v !== null && typeof v === 'object' ? v : {};
    const type = 'type' in o ? o.type : undefined;
    const subject = 'subject' in o ? o.subject : undefined;
    const meters = 'meters' in o ? o.meters : undefined;
    const startMs = 'startMs' in o ? o.startMs : undefined;
    const endMs = 'endMs' in o ? o.endMs : undefined;
    if (typeof type !== 'string' || typeof subject !== 'string' || !Array.isArray(meters) || typeof startMs !== 'number' || typeof endMs !== 'number') {
      throw new Error(`not a truth record: ${l}`);
    }
    return { type, subject, meters: meters.filter((m): m is string => typeof m === 'string'), startMs, endMs };
  });
}

/** Fleet demand per 15-minute interval from the ledger (every meter reads every 15 minutes here). */
function peakFleetKw(ledger: Map<string, Map<number, LedgerRow>>): number {
  const total = new Map<number, number>();
  for (const rows of ledger.values()) {
    for (const r of rows.values()) {
      const prev = rows.get(r.ts - STEP);
      if (prev !== undefined) total.set(r.ts, (total.get(r.ts) ?? 0) + Math.max(0, r.importWh - prev.importWh));
    }
  }
  return (Math.max(...total.values()) * (3_600_000 / STEP)) / 1000;
}

async function influxql(url: string, db: string, q: string): Promise<InfluxSeries[]> {
  const res = await fetch(`${url}/query?db=${encodeURIComponent(db)}&epoch=ms`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `q=${encodeURIComponent(q)}`,
  });
  const body: unknown = await res.json();
  if (!res.ok) throw new Error(`InfluxDB answered ${res.status}: ${JSON.stringify(body)}`);
  return parseQueryResponse(body);
}

/** At least one series with a non-null value outside the time column. */
function hasData(series: InfluxSeries[]): boolean {
  return series.some((s) => s.values.some((row) => row.some((v, i) => s.columns[i] !== 'time' && v !== null && v !== undefined)));
}

function tagValues(series: InfluxSeries[]): string[] {
  const out: string[] = [];
  for (const s of series) {
    const col = s.columns.indexOf('value');
    for (const row of s.values) {
      const v = row[col];
      if (typeof v === 'string') out.push(v);
    }
  }
  return [...new Set(out)].sort();
}

interface Resolved {
  /** Values of multi-value variables (all real values) and textboxes. */
  fixed: Map<string, VariableValue>;
  /** Candidates of single-value variables, tried in order per query. */
  candidates: Map<string, string[]>;
}

/** Variable values as Grafana would list them: each query variable's SHOW TAG VALUES, chained in order. */
async function resolveVariables(d: Dashboard, run: (q: string) => Promise<InfluxSeries[]>, range: Range): Promise<Resolved> {
  const vars = variablesOf(d);
  const fixed = new Map<string, VariableValue>();
  const candidates = new Map<string, string[]>();
  for (const v of vars) {
    if (v.type === 'textbox' || v.type === 'constant') {
      fixed.set(v.name, { values: v.current });
      continue;
    }
    const q: PanelQuery = { dashboard: d.uid, kind: 'variable', title: v.name, refId: v.name, query: v.query };
    const values = tagValues(await run(expandQuery(q, { range, variables: vars, values: fixed, datasourceMin: DATASOURCE_MIN_INTERVAL })));
    if (values.length === 0) throw new Error(`${d.uid}: variable ${v.name} has no values (${v.query})`);
    if (v.multi) fixed.set(v.name, { values });
    else {
      candidates.set(v.name, values);
      // Later variables chain on the first candidate, as Grafana selects the first value by default.
      fixed.set(v.name, { values: [values[0] ?? ''] });
    }
  }
  return { fixed, candidates };
}

interface Outcome {
  query: PanelQuery;
  expanded: string;
  ok: boolean;
  error?: string;
  chosen?: string;
}

/** Runs one query; for a single-value variable it uses, tries its real values until one shows data. */
async function runQuery(d: Dashboard, q: PanelQuery, resolved: Resolved, run: (q: string) => Promise<InfluxSeries[]>, range: Range): Promise<Outcome> {
  const vars = variablesOf(d);
  const single = variablesUsed(q.query).find((n) => resolved.candidates.has(n));
  const tries = single === undefined ? [undefined] : (resolved.candidates.get(single) ?? []);
  let last: Outcome | undefined;
  for (const value of tries) {
    const values = new Map(resolved.fixed);
    if (single !== undefined && value !== undefined) values.set(single, { values: [value] });
    const expanded = expandQuery(q, { range, variables: vars, values, datasourceMin: DATASOURCE_MIN_INTERVAL });
    try {
      const ok = hasData(await run(expanded));
      last = { query: q, expanded, ok, ...(value !== undefined ? { chosen: `${single}=${value}` } : {}) };
      if (ok) return last;
    } catch (err) {
      return { query: q, expanded, ok: false, error: err instanceof Error ? err.message : String(err) };
    }
  }
  return last ?? { query: q, expanded: q.query, ok: false, error: 'no candidate value' };
}

/** Queries whose data such a run cannot produce, with the reason; they must still run without an InfluxQL error. */
const NO_DATA_EXPECTED: Record<string, string> = {};

describe('dashboards against a real InfluxDB filled by a simulated pipeline run', () => {
  const svc: { redis?: LocalService; mqtt?: LocalService; influx?: LocalService } = {};
  const roles: RoleHandle[] = [];
  const db = uniquePrefix('dash');
  const dashboards = loadDashboards();
  const fleet = generateFleet(scenario);
  let dir: string;
  let redis: Redis;
  let summary: SimSummary;
  let ledger: Map<string, Map<number, LedgerRow>>;
  let truth: Injection[];
  let eventRange: Range;
  let wallRange: Range;
  let runSeconds = 0;
  let logs: string[] = [];
  const rangeOf = (uid: string): Range => (uid === 'meterflow-pipeline' ? wallRange : eventRange);
  const run = (q: string): Promise<InfluxSeries[]> => influxql(svc.influx?.url ?? '', db, q);

  beforeAll(async () => {
    const t0 = Date.now();
    [svc.redis, svc.mqtt, svc.influx] = await Promise.all([startRedis(), startMosquitto(), startInflux()]);
    dir = mkdtempSync(join(tmpdir(), 'mf-dashboards-'));
    // Dry run first: the ledger gives the fleet's peak, so the system-peak threshold sits just under it.
    await runSimulation({ scenario, dryRun: true, outDir: join(dir, 'dry') });
    const thresholdKw = Math.floor(peakFleetKw(readLedger(join(dir, 'dry', 'ledger.csv'))) * 0.95);
    const cfgFile = join(dir, 'overrides.yaml');
    // A 1-day warm-up (instead of 21) and a 1-day drop rule so three days exercise the baseline detectors;
    // short stats periods so a one-minute run leaves several pipeline-health points; alert events one at a
    // time, in queue order (see the outage check below).
    writeFileSync(cfgFile, `detection:
  baseline: { warmupDays: 1 }
  drop: { days: 1 }
  systemPeak: { thresholdKw: ${thresholdKw} }
  worker: { blockMs: 100, claimIdleMs: 500, statsSeconds: 2 }
ingest:
  statsIntervalSeconds: 2
alerts:
  worker: { eventsConcurrency: 1 }
`);
    // Config sections read process.env's MF_CONFIG (one process per role), so in-process roles need it set.
    process.env.MF_CONFIG = cfgFile;
    const env = serviceEnv({ redis: svc.redis, mqtt: svc.mqtt, influx: svc.influx }, {
      INFLUX_API: 'v1', INFLUX_BUCKET: db, MF_TIMEZONE: 'UTC', MF_CONFIG: cfgFile, STREAM_SHARDS: String(SHARDS),
    });
    const { log, lines: logLines } = memoryLogger('warn');
    logs = logLines;
    const { ctx, config } = roleContext(env, log);
    redis = createRedis(config.redis.url, 'test');
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    await registry.upsertMeters(fleet.customers);
    await registry.upsertTransformers(fleet.transformers);

    const wallFrom = Date.now();
    roles.push(await startIngest(ctx));
    roles.push(await startStream(ctx));
    roles.push(await startAlerts(ctx));
    const billingCfg = structuredClone(loadSection('billing', BillingConfig, {}));
    billingCfg.close.everyMs = 500;
    const billing: BillingHandle = await startBilling(ctx, { billing: billingCfg });
    roles.push(billing);

    summary = await runSimulation({ scenario, mqttUrl: svc.mqtt.url, outDir: join(dir, 'run'), backfill: true, respond: false, clientId: 'dashboards-sim' });
    await settle(redis, billing, scenario.toMs);
    // The write-error panel differentiates per minute: keep the roles (and their stats points) running into the
    // next wall-clock minute, as a dashboard refreshed a minute later would see them.
    const nextMinute = Math.floor(wallFrom / MIN) * MIN + MIN;
    if (Date.now() < nextMinute + 3000) await new Promise((r) => setTimeout(r, nextMinute + 3000 - Date.now()));
    for (const r of roles.reverse()) await r.close();
    roles.length = 0;
    eventRange = { fromMs: scenario.fromMs, toMs: Date.now() };
    wallRange = { fromMs: wallFrom, toMs: Date.now() };
    ledger = readLedger(join(dir, 'run', 'ledger.csv'));
    truth = readTruth(join(dir, 'run', 'truth.jsonl'));
    runSeconds = (Date.now() - t0) / 1000;
  }, 240_000);

  afterAll(async () => {
    for (const r of roles.reverse()) await r.close();
    if (redis) await closeRedis(redis);
    await Promise.all([svc.redis?.destroy(), svc.mqtt?.destroy(), svc.influx?.destroy()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
    delete process.env.MF_CONFIG;
  });

  it('the run finishes in time and fills every measurement of the contract', async () => {
    expect(summary.meters).toBe(40);
    expect(runSeconds).toBeLessThan(90);
    const names = (await run('SHOW MEASUREMENTS')).flatMap((s) => s.values.map((r) => r[0]));
    expect(names.sort()).toEqual(['alert', 'anomaly', 'baseline', 'billing_daily', 'dlq', 'feeder_load', 'interval', 'pipeline', 'reading', 'system_load']);
  });

  it('finds the six dashboards', () => {
    expect(dashboards.map((d) => d.uid).sort()).toEqual([
      'meterflow-alerts', 'meterflow-billing', 'meterflow-feeders', 'meterflow-fleet', 'meterflow-meter', 'meterflow-pipeline',
    ]);
  });

  for (const d of dashboards) {
    it(`${d.title}: every query returns data`, async () => {
      const range = rangeOf(d.uid);
      const resolved = await resolveVariables(d, run, range);
      const outcomes: Outcome[] = [];
      for (const q of queriesOf(d)) outcomes.push(await runQuery(d, q, resolved, run, range));
      const key = (o: Outcome): string => `${o.query.dashboard}|${o.query.title}|${o.query.refId}`;
      const errors = outcomes.filter((o) => o.error !== undefined).map((o) => `${key(o)}: ${o.error ?? ''}\n    ${o.expanded}`);
      expect(errors, errors.join('\n')).toEqual([]);
      const failed = outcomes.filter((o) => !o.ok && NO_DATA_EXPECTED[key(o)] === undefined).map((o) => `${o.query.kind} ${key(o)}: no data\n    ${o.expanded}`);
      expect(failed, failed.join('\n')).toEqual([]);
      expect(outcomes.length).toBeGreaterThan(0);
    });
  }

  /** One panel query of a dashboard, expanded with the given variable values (All for the others). */
  async function panel(uid: string, title: string, refId: string, chosen: Record<string, string[]> = {}): Promise<InfluxSeries[]> {
    const d = dashboards.find((x) => x.uid === uid);
    const q = d === undefined ? undefined : queriesOf(d).find((x) => x.kind === 'panel' && x.title === title && x.refId === refId);
    if (d === undefined || q === undefined) throw new Error(`no panel "${title}" ${refId} in ${uid}`);
    const variables = variablesOf(d);
    const values = new Map<string, VariableValue>(variables.map((v) => [v.name, chosen[v.name] ? { values: chosen[v.name] ?? [] } : v.type === 'textbox' ? { values: v.current } : { all: true }]));
    return run(expandQuery(q, { range: rangeOf(uid), variables, values, datasourceMin: DATASOURCE_MIN_INTERVAL }));
  }
  const nonNull = (s: InfluxSeries | undefined, column: string): unknown[] => {
    const i = s?.columns.indexOf(column) ?? -1;
    return (s?.values ?? []).map((r) => r[i]).filter((v) => v !== null);
  };

  it('an empty database yields no data for the same queries (the check can fail)', async () => {
    const empty = uniquePrefix('empty');
    await run(`CREATE DATABASE "${empty}"`);
    const d = dashboards.find((x) => x.uid === 'meterflow-fleet');
    expect(d).toBeDefined();
    if (d === undefined) return;
    const values = new Map<string, VariableValue>(variablesOf(d).map((v) => [v.name, { all: true }]));
    const panels = queriesOf(d).filter((q) => q.kind === 'panel');
    let withData = 0;
    for (const q of panels) {
      const expanded = expandQuery(q, { range: eventRange, variables: variablesOf(d), values, datasourceMin: DATASOURCE_MIN_INTERVAL });
      if (hasData(await influxql(svc.influx?.url ?? '', empty, expanded))) withData++;
    }
    expect(panels.length).toBeGreaterThan(5);
    expect(withData).toBe(0);
  });

  it('debug', async () => {
    console.log(logs.slice(0, 30).join('\n'));
    console.log(JSON.stringify(truth.map((t) => [t.type, t.subject, t.meters.length, new Date(t.startMs).toISOString(), new Date(t.endMs).toISOString()])));
    for (const q of ['SELECT max(demand_kw), max(threshold_kw) FROM system_load', 'SELECT max(utilization) FROM feeder_load GROUP BY transformer',
      'SELECT count(value) FROM anomaly GROUP BY type, status', 'SELECT count(count) FROM alert GROUP BY type, state', 'SELECT count(wh) FROM interval WHERE estimated = true GROUP BY meter, class, transformer',
      "SELECT * FROM anomaly WHERE type =~ /lastGasp|powerRestored|silent/", "SELECT * FROM alert WHERE type =~ /lastGasp|silent|outage/"]) {
      console.log(q, JSON.stringify((await run(q)).map((x) => [x.tags, x.values.slice(0, 40)])).slice(0, 9000));
    }
    for (const [uid, title] of [['meterflow-fleet', 'Open alerts by severity'], ['meterflow-alerts', 'Theft and tamper suspects'], ['meterflow-feeders', 'Outages'], ['meterflow-billing', 'Period reads']] as const) {
      const s = await panel(uid, title, 'A');
      console.log(title, JSON.stringify(s.map((x) => [x.tags, x.values.slice(0, 3)])).slice(0, 3000));
    }
    void nonNull; void ledger;
  });
});

/** Waits until ingest, stream worker, alerts and billing have nothing left to do for a few seconds in a row. */
async function settle(redis: Redis, billing: BillingHandle, toMs: number): Promise<void> {
  const events = new Queue('events', { connection: redis });
  try {
    const deadline = Date.now() + 120_000;
    let quiet = 0;
    while (quiet < 3) {
      if (Date.now() > deadline) throw new Error(`pipeline did not settle: watermarks ${JSON.stringify(await redis.hgetall(keys.watermark))}`);
      await new Promise((r) => setTimeout(r, 1000));
      let backlog = 0;
      for (let s = 0; s < SHARDS; s++) backlog += await redis.xlen(keys.readings(s));
      const wms = (await redis.hvals(keys.watermark)).map(Number);
      const busy = async (q: Queue): Promise<number> => {
        const c = await q.getJobCounts('waiting', 'active', 'prioritized');
        return (c.waiting ?? 0) + (c.active ?? 0) + (c.prioritized ?? 0);
      };
      // The newest reads are at `toMs`; the watermark trails them by the 30-minute lateness.
      const done = backlog === 0 && wms.length === SHARDS && Math.min(...wms) >= toMs - 45 * MIN &&
        (await busy(events)) === 0 && (await busy(billing.queue)) === 0;
      quiet = done ? quiet + 1 : 0;
    }
  } finally {
    await events.close();
  }
}
