import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAlerts } from '../../src/alerts/main.js';
import { startBilling, type BillingHandle } from '../../src/billing/main.js';
import { BillingConfig } from '../../src/contracts/config-billing.js';
import { TariffsConfigSchema } from '../../src/contracts/config-tariffs.js';
import { compileTariffs } from '../../src/domain/tariffs.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import { startIngest } from '../../src/ingest/main.js';
import { loadSection } from '../../src/shared/config.js';
import { parseQueryResponse, type InfluxSeries } from '../../src/shared/influx.js';
import { closeRedis, createRedis, keys, queuePrefix } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import type { RoleHandle } from '../../src/shared/role.js';
import { startStream } from '../../src/stream/main.js';
import { generateFleet, type Fleet } from '../../simulators/fleet.js';
import { planScenario } from '../../simulators/plan.js';
import { runSimulation, type SimSummary } from '../../simulators/publish.js';
import { loadScenario, type ResolvedScenario } from '../../simulators/scenario.js';
import {
  expandQuery,
  loadAlertRules,
  loadDashboards,
  queriesOf,
  variablesOf,
  variablesUsed,
  type Dashboard,
  type PanelQuery,
  type Range,
  type VariableValue,
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

// Monday to Thursday of last week (UTC): the same weekdays, hours and injections in every run, and recent
// enough that one "last two weeks" range holds the event-time data and the pipeline's wall-clock points.
const DAY = 86_400_000;
const TODAY = Math.floor(Date.now() / DAY) * DAY;
const FROM = TODAY - ((new Date(TODAY).getUTCDay() + 6) % 7) * DAY - 7 * DAY;
const scenarioOf = (seed: number): ResolvedScenario =>
  loadScenario({
    name: 'dashboards',
    seed,
    timezone: 'UTC',
    from: new Date(FROM).toISOString(),
    to: '+3d',
    batch: 10,
    fleet: {
      meters: 40,
      feeders: 2,
      metersPerTransformer: [6, 10],
      intervalMix: { '15': 1 },
      pvShare: 0.2,
      // More critical customers than a real fleet, so a seed putting the silent injection on one comes early.
      classMix: { residential: 0.65, commercial: 0.1, industrial: 0.05, critical: 0.2 },
    },
    // After the 1-day warm-up set below, so the baseline detectors can fire.
    anomalies: {
      window: { start: '26h', end: '0h' },
      spike: { count: 1, subtleShare: 0 },
      // A long bypass, longer than the drop rule's sliding window.
      drop: { count: 1, subtleShare: 0, clear: { hours: [44, 46], bypass: [0.1, 0.2] } },
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

/**
 * The first seed whose silent meter is a critical customer, so the critical-customer panel has data (the
 * simulator keeps outages off transformers with critical customers).
 */
function pickSeed(): { scenario: ResolvedScenario; fleet: Fleet } {
  for (let seed = 1; seed <= 100; seed++) {
    const scenario = scenarioOf(seed);
    const fleet = generateFleet(scenario);
    const silent = planScenario(fleet, scenario).truth.find((t) => t.type === 'silent');
    if (fleet.customers.find((c) => c.meterId === silent?.subject)?.class === 'critical') return { scenario, fleet };
  }
  throw new Error('no seed in 1..100 puts the silent injection on a critical customer');
}
const { scenario, fleet } = pickSeed();

interface LedgerRow {
  ts: number;
  importWh: number;
  published: boolean;
}

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

interface Injection {
  type: string;
  subject: string;
  meters: string[];
  startMs: number;
  endMs: number;
}

/** The fields of the simulator's truth.jsonl this test uses, parsed. */
function readTruth(file: string): Injection[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
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

/** The time zones of the shipped tariffs: billing closes days and months per zone. */
function tariffZones(): string[] {
  const tariffs = compileTariffs(loadSection('tariffs', TariffsConfigSchema, {}), 'UTC');
  return [...new Set([...tariffs.byName.values()].map((t) => t.timezone))].sort();
}

/** Calendar months (YYYY-MM) touched by [fromMs, toMs), by UTC date with a day either side for the zones. */
function monthsBetween(fromMs: number, toMs: number): string[] {
  const out = new Set<string>();
  for (let t = fromMs - DAY; t < toMs + DAY; t += DAY) out.add(new Date(t).toISOString().slice(0, 7));
  return [...out].sort();
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
const NO_DATA_EXPECTED: Record<string, string> = {
  // Every alert of the run has resolved by its end (injections stop before the data does); the panel is checked
  // below over a range that ends inside the reverse-flow injection.
  'meterflow-alerts|Open alerts by type|A': 'no alert is still open at the end of the run',
};

describe('dashboards against a real InfluxDB filled by a simulated pipeline run', () => {
  const svc: { redis?: LocalService; mqtt?: LocalService; influx?: LocalService } = {};
  const roles: RoleHandle[] = [];
  const db = uniquePrefix('dash');
  const dashboards = loadDashboards();
  let dir: string;
  let redis: Redis;
  let summary: SimSummary;
  let ledger: Map<string, Map<number, LedgerRow>>;
  let truth: Injection[];
  let eventRange: Range;
  let wallRange: Range;
  let runSeconds = 0;
  let logs: string[] = [];
  let monthRange: Range;
  const rangeOf = (uid: string): Range => {
    if (uid === 'meterflow-pipeline') return wallRange;
    // Profiles are stamped at the local midnight starting their month, before the run's first day.
    if (uid === 'meterflow-insights') return monthRange;
    return eventRange;
  };
  const run = (q: string): Promise<InfluxSeries[]> => influxql(svc.influx?.url ?? '', db, q);

  beforeAll(async () => {
    const t0 = Date.now();
    [svc.redis, svc.mqtt, svc.influx] = await Promise.all([startRedis(), startMosquitto(), startInflux()]);
    dir = mkdtempSync(join(tmpdir(), 'mf-dashboards-'));
    // Dry run first: the ledger gives the fleet's peak, so the system-peak threshold sits just under it.
    await runSimulation({ scenario, dryRun: true, outDir: join(dir, 'dry') });
    const thresholdKw = Math.floor(peakFleetKw(readLedger(join(dir, 'dry', 'ledger.csv'))) * 0.95);
    const cfgFile = join(dir, 'overrides.yaml');
    // A 1-day warm-up (instead of 21) so three days exercise the baseline detectors;
    // short stats periods so a one-minute run leaves several pipeline-health points.
    writeFileSync(
      cfgFile,
      `detection:
  baseline: { warmupDays: 1 }
  systemPeak: { thresholdKw: ${thresholdKw} }
  worker: { idleMs: 50, leaseMs: 2000, statsSeconds: 2 }
ingest:
  statsIntervalSeconds: 2
`,
    );
    // Config sections read process.env's MF_CONFIG (one process per role), so in-process roles need it set.
    process.env.MF_CONFIG = cfgFile;
    const env = serviceEnv(
      { redis: svc.redis, mqtt: svc.mqtt, influx: svc.influx },
      {
        INFLUX_API: 'v1',
        INFLUX_BUCKET: db,
        MF_TIMEZONE: 'UTC',
        MF_CONFIG: cfgFile,
        STREAM_SHARDS: String(SHARDS),
      },
    );
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
    await settle(redis, billing, scenario.toMs, logs);
    // The run's days are closed, their months are not (they have not ended): profile them as the month close would,
    // so the customer-insights dashboard has customer_profile points (incomplete months, every field written).
    for (const timezone of tariffZones()) {
      for (const month of monthsBetween(scenario.fromMs, scenario.toMs)) await billing.closer.closeMonth({ timezone, month });
    }
    runSeconds = (Date.now() - t0) / 1000;
    // The write-error panel differentiates per minute: keep the roles (and their stats points) running into the
    // next wall-clock minute, as a dashboard refreshed a minute later would see them.
    // The first stats points land ~2 s after the roles start, so the minute they fill is the one after wallFrom + 5 s:
    // a fast run that starts at :58 would otherwise leave the derivative a single bucket.
    const nextMinute = Math.floor((wallFrom + 5000) / MIN) * MIN + MIN;
    if (Date.now() < nextMinute + 3000) await new Promise((r) => setTimeout(r, nextMinute + 3000 - Date.now()));
    for (const r of roles.reverse()) await r.close();
    roles.length = 0;
    eventRange = { fromMs: scenario.fromMs, toMs: Date.now() };
    monthRange = { fromMs: Date.parse(`${monthsBetween(scenario.fromMs, scenario.toMs)[0] ?? ''}-01T00:00:00Z`) - DAY, toMs: Date.now() };
    wallRange = { fromMs: wallFrom, toMs: Date.now() };
    ledger = readLedger(join(dir, 'run', 'ledger.csv'));
    truth = readTruth(join(dir, 'run', 'truth.jsonl'));
  }, 240_000);

  afterAll(async () => {
    for (const r of roles.reverse()) await r.close();
    if (redis) await closeRedis(redis);
    await Promise.all([svc.redis?.destroy(), svc.mqtt?.destroy(), svc.influx?.destroy()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
    delete process.env.MF_CONFIG;
  });

  it('the run (services, simulation, pipeline settled) finishes in time and fills every measurement of the contract', async () => {
    expect(summary.meters).toBe(40);
    console.info(`dashboards: services + simulation + pipeline settled in ${runSeconds.toFixed(1)} s`);
    expect(runSeconds).toBeLessThan(90);
    const names = (await run('SHOW MEASUREMENTS')).flatMap((s) => s.values.map((r) => r[0]));
    expect(names.sort()).toEqual([
      'alert',
      'anomaly',
      'baseline',
      'billing_daily',
      'customer_profile',
      'dlq',
      'feeder_load',
      'interval',
      'pipeline',
      'reading',
      'system_load',
    ]);
  });

  it('finds the seven dashboards', () => {
    expect(dashboards.map((d) => d.uid).sort()).toEqual([
      'meterflow-alerts',
      'meterflow-billing',
      'meterflow-feeders',
      'meterflow-fleet',
      'meterflow-insights',
      'meterflow-meter',
      'meterflow-pipeline',
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
      const failed = outcomes
        .filter((o) => !o.ok && NO_DATA_EXPECTED[key(o)] === undefined)
        .map((o) => `${o.query.kind} ${key(o)}: no data\n    ${o.expanded}`);
      expect(failed, failed.join('\n')).toEqual([]);
      expect(outcomes.length).toBeGreaterThan(0);
    });
  }

  /** One panel query of a dashboard, expanded with the given variable values (All for the others). */
  async function panel(uid: string, title: string, refId: string, chosen: Record<string, string[]> = {}, range = rangeOf(uid)): Promise<InfluxSeries[]> {
    const d = dashboards.find((x) => x.uid === uid);
    const q = d === undefined ? undefined : queriesOf(d).find((x) => x.kind === 'panel' && x.title === title && x.refId === refId);
    if (d === undefined || q === undefined) throw new Error(`no panel "${title}" ${refId} in ${uid}`);
    const variables = variablesOf(d);
    const values = new Map<string, VariableValue>(
      variables.map((v) => [v.name, chosen[v.name] ? { values: chosen[v.name] ?? [] } : v.type === 'textbox' ? { values: v.current } : { all: true }]),
    );
    return run(expandQuery(q, { range, variables, values, datasourceMin: DATASOURCE_MIN_INTERVAL }));
  }
  const nonNull = (s: InfluxSeries | undefined, column: string): unknown[] => {
    const i = s?.columns.indexOf(column) ?? -1;
    return (s?.values ?? []).map((r) => r[i]).filter((v) => v !== null);
  };

  it("alert rules: every InfluxQL query runs over the rule's own time range and returns the broker figures", async () => {
    const { queries } = loadAlertRules();
    const results: string[] = [];
    for (const q of queries) {
      const toMs = Date.now();
      const expanded = q.query.replace('$timeFilter', `time >= ${toMs - q.fromSeconds * 1000}ms and time <= ${toMs}ms`);
      const series = await run(expanded);
      const value = series[0]?.values[0]?.[1];
      results.push(`${q.rule}/${q.refId}: ${typeof value === 'number' ? 'number' : String(value)}`);
    }
    // Mosquitto's $SYS reached the ingest: queued count and growth, and a dropped count of 0.
    expect(results).toEqual(queries.map((q) => `${q.rule}/${q.refId}: number`));
  });

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

  // Exact answers from the simulator's own records: the ledger (every meter's registers at every read, and
  // whether the read was published) and the truth file (what was injected where).
  describe('panel queries compute what the operator reads (simulator ledger and truth)', () => {
    const published = (meterId: string): LedgerRow[] => [...(ledger.get(meterId)?.values() ?? [])].filter((r) => r.published).sort((a, b) => a.ts - b.ts);

    it('meters expected: the whole simulated fleet', async () => {
      const series = await panel('meterflow-fleet', 'Meters expected', 'A');
      expect(nonNull(series[0], 'count')).toEqual([fleet.customers.length]);
    });

    it("energy in range and register of every meter equal the ledger's register delta and last register", async () => {
      const got: Array<[string, unknown, unknown]> = [];
      const want: Array<[string, number, number]> = [];
      for (const c of fleet.customers) {
        const rows = published(c.meterId);
        const first = rows[0];
        const last = rows[rows.length - 1];
        if (first === undefined || last === undefined) throw new Error(`no published read for ${c.meterId}`);
        const energy = await panel('meterflow-meter', 'Energy in range', 'A', { meter: [c.meterId] });
        const register = await panel('meterflow-meter', 'Register', 'A', { meter: [c.meterId] });
        got.push([c.meterId, nonNull(energy[0], 'sum')[0], nonNull(register[0], 'last')[0]]);
        want.push([c.meterId, last.importWh - first.importWh, last.importWh]);
      }
      expect(got).toEqual(want);
    });

    it('estimated intervals of every meter: the intervals spanned by its gaps between published reads', async () => {
      const got: Array<[string, unknown]> = [];
      const want: Array<[string, number]> = [];
      for (const c of fleet.customers) {
        const rows = published(c.meterId);
        let gapIntervals = 0;
        for (let i = 1; i < rows.length; i++) {
          const gap = (rows[i]?.ts ?? 0) - (rows[i - 1]?.ts ?? 0);
          if (gap > STEP) gapIntervals += gap / STEP;
        }
        const series = await panel('meterflow-meter', 'Estimated intervals', 'A', { meter: [c.meterId] });
        got.push([c.meterId, nonNull(series[0], 'count')[0] ?? 0]);
        want.push([c.meterId, gapIntervals]);
      }
      expect(got).toEqual(want);
      // The silent injection is among them.
      const silent = truth.find((t) => t.type === 'silent');
      expect(got.find(([m]) => m === silent?.subject)?.[1]).toBeGreaterThanOrEqual(((silent?.endMs ?? 0) - (silent?.startMs ?? 0)) / STEP);
    });

    it('theft and tamper suspects include the injected flatline and reverse-flow meters', async () => {
      const series = await panel('meterflow-alerts', 'Theft and tamper suspects', 'A');
      const found = new Set(series.map((s) => `${s.tags.type ?? ''} ${s.tags.meter ?? ''}`));
      const injected = truth.filter((t) => t.type === 'flatline' || t.type === 'reverseFlow').map((t) => `${t.type} ${t.subject}`);
      expect(injected.length).toBe(2);
      expect(injected.filter((k) => !found.has(k))).toEqual([]);
    });

    it('the injected outage reaches InfluxDB as a last gasp and a power-restored event from each of its meters', async () => {
      const outage = truth.find((t) => t.type === 'outage');
      expect(outage?.meters.length).toBeGreaterThanOrEqual(5);
      const series = await run(`SELECT count("value") FROM "anomaly" WHERE "type" =~ /^(lastGasp|powerRestored)$/ GROUP BY "type", "meter"`);
      const got = series.map((s) => `${s.tags.type ?? ''} ${s.tags.meter ?? ''}`).sort();
      const want = (outage?.meters ?? []).flatMap((m) => [`lastGasp ${m}`, `powerRestored ${m}`]).sort();
      expect(got).toEqual(want);
    });

    it('the injected outage is one outage alert on its transformer, opened then resolved', async () => {
      const outage = truth.find((t) => t.type === 'outage');
      const series = await run(`SELECT "state", "alert_id" FROM "alert" WHERE "type" = 'outage' GROUP BY "subject"`);
      const got = series.map((s) => `${s.tags.subject ?? ''}: ${s.values.map((v) => String(v[1])).join(',')}`);
      expect(got).toEqual([`${outage?.subject ?? ''}: open,resolved`]);
      expect(new Set(series[0]?.values.map((v) => v[2])).size).toBe(1);
    });

    it('open alerts by type, as seen in the middle of the reverse-flow injection: its alert is open', async () => {
      const rf = truth.find((t) => t.type === 'reverseFlow');
      if (rf === undefined) throw new Error('no reverse-flow injection in the truth file');
      const series = await panel('meterflow-alerts', 'Open alerts by type', 'A', {}, { fromMs: scenario.fromMs, toMs: (rf.startMs + rf.endMs) / 2 });
      const byType = Object.fromEntries(series.map((s) => [s.tags.type ?? '', nonNull(s, 'count')[0]]));
      expect(byType.reverseFlow).toBe(1);
    });

    it('critical customers without supply data: the silent critical meter, per hour of its gap', async () => {
      const silent = truth.find((t) => t.type === 'silent');
      const meter = fleet.customers.find((c) => c.meterId === silent?.subject);
      expect(meter?.class).toBe('critical');
      const series = await panel('meterflow-feeders', 'Critical customers without supply data', 'A');
      expect(series.map((s) => s.tags.transformer)).toEqual([meter?.transformerId]);
      expect(nonNull(series[0], 'count').every((n) => n === 1)).toBe(true);
    });

    it('daily reads: start and end registers equal the ledger at the day boundaries, bands add up', async () => {
      const rows = await run(`SELECT "start_register_wh", "end_register_wh", "total_wh", "to_ms" FROM "billing_daily" GROUP BY "meter"`);
      let compared = 0;
      for (const s of rows) {
        const meterId = s.tags.meter ?? '';
        const col = (row: unknown[], name: string): number | null => {
          const v = row[s.columns.indexOf(name)];
          return typeof v === 'number' ? v : null;
        };
        for (const row of s.values) {
          const t = col(row, 'time') ?? 0;
          const start = col(row, 'start_register_wh');
          const end = col(row, 'end_register_wh');
          const total = col(row, 'total_wh');
          // The first day of the run is partial: it has no start register.
          if (start === null) continue;
          expect([meterId, t, start + (total ?? 0)]).toEqual([meterId, t, end]);
          const a = ledger.get(meterId)?.get(t);
          const b = ledger.get(meterId)?.get(col(row, 'to_ms') ?? 0);
          if (a?.published !== true || b?.published !== true) continue;
          expect([meterId, t, start, end]).toEqual([meterId, t, a.importWh, b.importWh]);
          compared++;
        }
      }
      expect(compared).toBeGreaterThanOrEqual(fleet.customers.length);
      // Period reads over whole days only: from a day after the first read, every tariff zone's day is complete
      // (over a range that starts in the partial first day, first(start) skips it while sum(total) counts it).
      const reads = await panel('meterflow-billing', 'Period reads', 'A', {}, { fromMs: scenario.fromMs + DAY, toMs: eventRange.toMs });
      expect(reads).toHaveLength(fleet.customers.length);
      for (const s of reads) {
        const [start] = nonNull(s, 'start register Wh');
        const [end] = nonNull(s, 'end register Wh');
        const [total] = nonNull(s, 'total Wh');
        const bands = s.columns.filter((c) => c.startsWith('sum_band_')).map((c) => nonNull(s, c)[0] ?? 0);
        expect(typeof start === 'number' && typeof total === 'number' ? start + total : undefined, s.tags.meter).toBe(end);
        expect(
          bands.reduce((x: number, y) => x + (typeof y === 'number' ? y : Number.NaN), 0),
          s.tags.meter,
        ).toBe(total);
      }
    });

    it("customer insights: each profile's kWh is its meters' daily energy; tariff advice saving = current - cheapest >= 0", async () => {
      const daily = new Map<string, number>();
      for (const s of await run(`SELECT sum("total_wh") AS "wh" FROM "billing_daily" GROUP BY "customer"`)) {
        daily.set(s.tags.customer ?? '', Number(nonNull(s, 'wh')[0]));
      }
      const profiles = await run(`SELECT sum("energy_wh") AS "wh" FROM "customer_profile" GROUP BY "customer"`);
      expect(profiles).toHaveLength(new Set(fleet.customers.map((c) => c.customerId)).size);
      for (const s of profiles) expect([s.tags.customer, nonNull(s, 'wh')[0]]).toEqual([s.tags.customer, daily.get(s.tags.customer ?? '')]);

      const advice = await panel(
        'meterflow-insights',
        "Tariff advice: what each customer's last closed month cost, and on the cheapest tariff it may take",
        'A',
      );
      expect(advice).toHaveLength(profiles.length);
      for (const s of advice) {
        const [current] = nonNull(s, 'current bill');
        const [cheapest] = nonNull(s, 'cheapest bill');
        const [saving] = nonNull(s, 'saving');
        expect(typeof current === 'number' && typeof cheapest === 'number' && typeof saving === 'number', s.tags.customer).toBe(true);
        expect(Number(current) - Number(cheapest), s.tags.customer).toBeCloseTo(Number(saving), 6);
        expect(Number(saving), s.tags.customer).toBeGreaterThanOrEqual(0);
      }
    });
  });
});

/** Waits until ingest, stream worker, alerts and billing have nothing left to do for a few seconds in a row. */
async function settle(redis: Redis, billing: BillingHandle, toMs: number, logs: string[]): Promise<void> {
  const events = new Queue('events', { connection: redis, prefix: queuePrefix('events') });
  try {
    const deadline = Date.now() + 120_000;
    let quiet = 0;
    while (quiet < 3) {
      if (Date.now() > deadline)
        throw new Error(`pipeline did not settle: watermarks ${JSON.stringify(await redis.hgetall(keys.watermark))}, logs:\n${logs.slice(-10).join('\n')}`);
      await new Promise((r) => setTimeout(r, 1000));
      let backlog = 0;
      for (let s = 0; s < SHARDS; s++) backlog += await redis.xlen(keys.readings(s));
      const wms = (await redis.hvals(keys.watermark)).map(Number);
      const busy = async (q: Queue): Promise<number> => {
        const c = await q.getJobCounts('waiting', 'active', 'prioritized');
        return (c.waiting ?? 0) + (c.active ?? 0) + (c.prioritized ?? 0);
      };
      // The newest reads are at `toMs`; the watermark trails them by the 30-minute lateness.
      const done =
        backlog === 0 && wms.length === SHARDS && Math.min(...wms) >= toMs - 45 * MIN && (await busy(events)) === 0 && (await busy(billing.queue)) === 0;
      quiet = done ? quiet + 1 : 0;
    }
  } finally {
    await events.close();
  }
}
