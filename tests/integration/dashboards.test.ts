import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseQueryResponse, type InfluxSeries } from '../../src/shared/influx.js';
import { int, lp } from '../../src/shared/line-protocol.js';
import {
  expandQuery, loadDashboards, queriesOf, variablesOf, variablesUsed,
  type Dashboard, type PanelQuery, type Range, type VariableValue,
} from '../helpers/grafana-queries.js';
import { startInflux, uniquePrefix, type LocalService } from '../helpers/services.js';

/**
 * Issue 7 item 3: every panel, annotation and variable query of every provisioned dashboard, expanded as Grafana
 * would expand it, runs against a real influxd and returns at least one series with a non-null value.
 *
 * The data comes from FALLBACK_SEEDED_FLEET below — a small seeded generator that writes every measurement of the
 * InfluxDB contract — because the pipeline roles are not wired yet. It stands in for the simulated run through
 * ingest → stream → alerts → billing, which is what this test must use once those roles exist.
 */

const DATASOURCE_MIN_INTERVAL = '10s'; // grafana/provisioning/datasources/meterflow.yaml jsonData.timeInterval

// ----------------------------------------------------------------------------------------------------------------
// FALLBACK_SEEDED_FLEET: stand-in data, not the pipeline's output.
// ----------------------------------------------------------------------------------------------------------------

const FALLBACK_START = Date.UTC(2026, 0, 5); // a Monday
const FALLBACK_DAYS = 3;
const MIN = 60_000;
const STEP = 15 * MIN;
const DAY = 86_400_000;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface FallbackMeter {
  meter: string;
  customer: string;
  cls: 'residential' | 'commercial' | 'industrial' | 'critical';
  tariff: string;
  feeder: string;
  transformer: string;
  hasPv: boolean;
}

const FALLBACK_TRANSFORMERS = [
  { transformer: 'T-1', feeder: 'F-1', ratingKw: 9 },
  { transformer: 'T-2', feeder: 'F-1', ratingKw: 40 },
  { transformer: 'T-3', feeder: 'F-2', ratingKw: 40 },
  { transformer: 'T-4', feeder: 'F-2', ratingKw: 60 },
] as const;

function fallbackMeters(): FallbackMeter[] {
  const out: FallbackMeter[] = [];
  for (let i = 1; i <= 24; i++) {
    const t = FALLBACK_TRANSFORMERS[i % FALLBACK_TRANSFORMERS.length] ?? FALLBACK_TRANSFORMERS[0];
    const cls = i === 5 || i === 14 ? 'critical' : i % 6 === 0 ? 'commercial' : i % 11 === 0 ? 'industrial' : 'residential';
    out.push({
      meter: `M-${String(i).padStart(4, '0')}`,
      customer: `C-${String(i).padStart(4, '0')}`,
      cls,
      tariff: cls === 'residential' ? 'res-tou' : 'com-tou',
      feeder: t.feeder,
      transformer: t.transformer,
      hasPv: i % 7 === 3,
    });
  }
  return out;
}

const bandAt = (ts: number): string => {
  const h = new Date(ts).getUTCHours();
  return h >= 18 && h < 22 ? 'peak' : h >= 8 && h < 18 ? 'flat' : 'valley';
};

/** Average watts of a meter class at a UTC time (morning/evening peaks, office hours, shifts). */
function profileW(cls: FallbackMeter['cls'], ts: number): number {
  const h = new Date(ts).getUTCHours() + new Date(ts).getUTCMinutes() / 60;
  switch (cls) {
    case 'residential':
      return 250 + 900 * Math.exp(-((h - 7.5) ** 2) / 2) + 1500 * Math.exp(-((h - 20) ** 2) / 3);
    case 'commercial':
      return h >= 8 && h < 19 ? 4000 : 600;
    case 'industrial':
      return h >= 6 && h < 22 ? 9000 : 3000;
    case 'critical':
      return 3000 + 500 * Math.sin((h / 24) * 2 * Math.PI);
  }
}

/** Line protocol for every measurement of the contract, deterministic for a seed. */
function FALLBACK_SEEDED_FLEET(seed: number): string[] {
  const rnd = mulberry32(seed);
  const lines: string[] = [];
  const meters = fallbackMeters();
  const end = FALLBACK_START + FALLBACK_DAYS * DAY;
  const outageFrom = FALLBACK_START + DAY + 8 * 3_600_000; // T-3 loses supply 08:00–10:00 on day 2
  const outageTo = outageFrom + 2 * 3_600_000;
  const register = new Map(meters.map((m, i) => [m.meter, 1_000_000 + i * 10_000]));
  const exportRegister = new Map(meters.map((m) => [m.meter, 0]));
  const daily = new Map<string, { start: number; end: number; total: number; exportWh: number; est: number; n: number; maxW: number; bands: Record<string, number> }>();
  const load = new Map<number, Map<string, number>>(); // interval start → transformer → W
  const anomaly = (meter: string, type: string, severity: string, status: string, value: number, expected: number, reason: string, ts: number): void => {
    lines.push(lp('anomaly', { meter, type, severity }, { value, expected, score: status === 'firing' ? 6.5 : 0, status, reason }, ts));
  };

  for (const m of meters) {
    for (let t = FALLBACK_START; t < end; t += STEP) {
      const inOutage = m.transformer === 'T-3' && t >= outageFrom && t < outageTo;
      let w = profileW(m.cls, t) * (0.85 + 0.3 * rnd());
      if (m.meter === 'M-0003' && t >= FALLBACK_START + DAY + 19 * 3_600_000 && t < FALLBACK_START + DAY + 20 * 3_600_000) w *= 6; // spike
      if (m.meter === 'M-0009' && t >= FALLBACK_START + 2 * DAY) w *= 0.2; // bypass: far below baseline
      const wh = Math.max(0, Math.round((w * STEP) / 3_600_000));
      const h = new Date(t).getUTCHours();
      const pvWh = m.hasPv && h >= 10 && h < 15 ? Math.round(wh * 0.6) : 0;
      const tamperExportWh = m.meter === 'M-0010' && t >= FALLBACK_START + 2 * DAY && h >= 1 && h < 3 ? 120 : 0; // export without PV
      const exportWh = pvWh + tamperExportWh;
      const regBefore = register.get(m.meter) ?? 0;
      const reg = regBefore + wh;
      register.set(m.meter, reg);
      const exReg = (exportRegister.get(m.meter) ?? 0) + exportWh;
      exportRegister.set(m.meter, exReg);
      const estimated = inOutage || (m.meter === 'M-0002' && t >= FALLBACK_START + 12 * 3_600_000 && t < FALLBACK_START + 13 * 3_600_000);
      const lowVoltage = m.meter === 'M-0007' && t >= FALLBACK_START + DAY + 17 * 3_600_000 && t < FALLBACK_START + DAY + 19 * 3_600_000;
      const voltage = lowVoltage ? 198 + rnd() * 4 : 229 + (rnd() - 0.5) * 6;
      if (!estimated) {
        lines.push(lp('reading', { meter: m.meter, feeder: m.feeder }, { import_wh: int(reg), export_wh: int(exReg), power_w: Math.round(w), voltage_v: Math.round(voltage * 10) / 10 }, t + STEP));
      }
      const band = bandAt(t);
      lines.push(lp('interval', { meter: m.meter, feeder: m.feeder, transformer: m.transformer, class: m.cls, band },
        { wh: int(wh), export_wh: int(exportWh), demand_w: (wh * 3_600_000) / STEP, register_wh: int(reg), estimated }, t));
      const slot = load.get(t) ?? new Map<string, number>();
      slot.set(m.transformer, (slot.get(m.transformer) ?? 0) + (wh * 3_600_000) / STEP);
      load.set(t, slot);
      const dayStart = t - (t % DAY);
      const key = `${m.meter}|${dayStart}`;
      const d = daily.get(key) ?? { start: regBefore, end: regBefore, total: 0, exportWh: 0, est: 0, n: 0, maxW: 0, bands: { peak: 0, flat: 0, valley: 0 } };
      d.end = reg;
      d.total += wh;
      d.exportWh += exportWh;
      d.n += 1;
      if (estimated) d.est += 1;
      d.maxW = Math.max(d.maxW, (wh * 3_600_000) / STEP);
      d.bands[band] = (d.bands[band] ?? 0) + wh;
      daily.set(key, d);
      if (lowVoltage) anomaly(m.meter, 'voltage', 'warning', 'firing', voltage, 230, `voltage ${voltage.toFixed(1)} V below 207 V`, t + STEP);
      if (tamperExportWh > 0) anomaly(m.meter, 'reverseFlow', 'major', 'firing', exportWh, 0, `${exportWh} Wh exported by a meter without PV`, t + STEP);
      if (m.meter === 'M-0009' && t >= FALLBACK_START + 2 * DAY && t < FALLBACK_START + 2 * DAY + 8 * STEP) {
        anomaly(m.meter, 'drop', 'major', 'firing', wh, wh * 5, `${wh} Wh, 20 % of the usual ${wh * 5} Wh`, t + STEP);
      }
      if (m.meter === 'M-0003' && w > 5000 && m.cls === 'residential') anomaly(m.meter, 'spike', 'warning', 'firing', wh, Math.round(wh / 6), `${wh} Wh in 15 min, 6x the usual`, t + STEP);
      if (inOutage && t === outageFrom + 2 * STEP) anomaly(m.meter, 'silent', 'warning', 'firing', 0, 3, 'no reading for 3 intervals', t + STEP);
    }
    // Baseline: hourly per meter, time = slot start.
    for (let t = FALLBACK_START; t < end; t += 3_600_000) {
      const expected = Math.round((profileW(m.cls, t) * STEP) / 3_600_000);
      lines.push(lp('baseline', { meter: m.meter }, { expected_wh: expected, spread_wh: Math.round(expected * 0.25) + 5 }, t));
    }
  }
  anomaly('M-0003', 'spike', 'warning', 'clear', 0, 0, 'back within baseline', FALLBACK_START + DAY + 20 * 3_600_000 + STEP);
  anomaly('M-0010', 'tamper', 'critical', 'firing', 1, 0, 'cover opened', FALLBACK_START + 2 * DAY + 3_600_000);
  anomaly('M-0010', 'flatline', 'warning', 'firing', 0, 150, 'register not moving for 4 intervals', FALLBACK_START + 2 * DAY + 3 * 3_600_000);

  const meterCount = meters.length;
  let peak = 0;
  for (const slot of load.values()) peak = Math.max(peak, [...slot.values()].reduce((a, b) => a + b, 0));
  const thresholdKw = Math.round((peak / 1000) * 0.92);
  for (const [t, slot] of [...load.entries()].sort((a, b) => a[0] - b[0])) {
    let total = 0;
    for (const tr of FALLBACK_TRANSFORMERS) {
      const w = slot.get(tr.transformer) ?? 0;
      total += w;
      const utilization = w / 1000 / tr.ratingKw;
      lines.push(lp('feeder_load', { feeder: tr.feeder, transformer: tr.transformer }, { demand_kw: w / 1000, rating_kw: tr.ratingKw, utilization }, t));
      if (utilization > 1) anomaly(tr.transformer, 'feederOverload', 'major', 'firing', w / 1000, tr.ratingKw, `${(w / 1000).toFixed(1)} kW on a ${tr.ratingKw} kW transformer`, t + STEP);
    }
    lines.push(lp('system_load', {}, { demand_kw: total / 1000, threshold_kw: thresholdKw }, t));
    if (total / 1000 > thresholdKw) anomaly('system', 'systemPeak', 'major', 'firing', total / 1000, thresholdKw, `system load ${(total / 1000).toFixed(0)} kW over ${thresholdKw} kW`, t + STEP);
  }

  // Alerts as src/alerts writes them: one point per change, tagged with the severity the alert had then.
  type Change = [ts: number, state: string, count: number, message: string, change: string, severity?: string];
  const alert = (type: string, severity: string, subject: string, id: string, changes: Change[], outage?: { customers: number; critical: number }): void => {
    for (const [ts, state, count, message, change, sev] of changes) {
      const restored = outage !== undefined && state === 'resolved' ? (ts - (changes[0]?.[0] ?? ts)) / 1000 : undefined;
      lines.push(lp('alert', { type, severity: sev ?? severity, subject }, {
        state, message, count: int(count), alert_id: id, change, flapping: false,
        customers_affected: outage ? int(outage.customers) : undefined,
        critical_customers: outage ? int(outage.critical) : undefined,
        duration_s: restored,
      }, ts));
    }
  };
  const h = 3_600_000;
  alert('spike', 'warning', 'M-0003', 'a-1', [[FALLBACK_START + DAY + 19 * h, 'open', 1, 'spike on M-0003', 'opened'], [FALLBACK_START + DAY + 21 * h, 'resolved', 4, 'spike on M-0003 cleared', 'resolved']]);
  // Escalated from major to critical: it must count once, as critical.
  alert('drop', 'major', 'M-0009', 'a-2', [[FALLBACK_START + 2 * DAY + STEP, 'open', 1, 'consumption 80 % below baseline', 'opened'], [FALLBACK_START + 2 * DAY + 2 * h, 'open', 8, 'consumption 80 % below baseline for 2 h', 'escalated', 'critical']]);
  alert('outage', 'critical', 'T-3', 'a-3', [[outageFrom + 2 * STEP, 'open', 6, 'outage on T-3', 'opened'], [outageTo + STEP, 'resolved', 6, 'outage on T-3 over', 'resolved']], { customers: 6, critical: 1 });
  alert('feederOverload', 'major', 'T-1', 'a-4', [[FALLBACK_START + 19 * h, 'open', 1, 'T-1 over rating', 'opened'], [FALLBACK_START + 19.25 * h, 'acknowledged', 2, 'T-1 over rating', 'acknowledged'], [FALLBACK_START + 22 * h, 'resolved', 9, 'T-1 back under rating', 'resolved']]);
  alert('reverseFlow', 'major', 'M-0010', 'a-5', [[FALLBACK_START + 2 * DAY + h + STEP, 'open', 1, 'export without PV on M-0010', 'opened']]);

  // Billing determinants per meter and (UTC) day, with the fields src/billing writes (completeness in %).
  for (const [key, d] of daily) {
    const [meterId, day] = key.split('|');
    const m = meters.find((x) => x.meter === meterId);
    if (m === undefined || day === undefined) continue;
    const completeness = Math.floor(((d.n - d.est) * 10000) / d.n) / 100;
    lines.push(lp('billing_daily', { meter: m.meter, customer: m.customer, tariff: m.tariff }, {
      start_register_wh: int(d.start), end_register_wh: int(d.end), total_wh: int(d.total), export_wh: int(d.exportWh),
      max_demand_w: d.maxW, intervals: int(d.n), estimated_intervals: int(d.est), completeness,
      quality: d.est > 0 ? 'estimated' : 'actual',
      band_peak_wh: int(d.bands.peak ?? 0), band_flat_wh: int(d.bands.flat ?? 0), band_valley_wh: int(d.bands.valley ?? 0),
    }, Number(day)));
  }

  // Pipeline health as src/ingest writes it (here every minute rather than every 10 s): counts are deltas since
  // the previous point, influx_retries / influx_failed_batches count since the process started, backlog and
  // lag are gauges; dead letters per reason and instance, only when there were some.
  const since = { ingest: { retries: 0, failed: 0 }, stream: { retries: 0, failed: 0 } };
  for (let t = FALLBACK_START; t < end; t += MIN) {
    const perMinute = meterCount / 15;
    const readings = Math.round(perMinute * (0.9 + 0.2 * rnd()));
    since.ingest.retries += rnd() < 0.01 ? 2 : 0;
    since.stream.retries += rnd() < 0.01 ? 3 : 0;
    since.stream.failed += rnd() < 0.002 ? 1 : 0;
    lines.push(lp('pipeline', { role: 'ingest', instance: 'ingest-1' }, {
      messages: int(Math.ceil(readings / 4)), readings: int(readings), duplicates: int(rnd() < 0.05 ? 1 : 0), rejected: int(rnd() < 0.03 ? 1 : 0),
      influx_backlog: int(rnd() * 50), influx_retries: int(since.ingest.retries), influx_failed_batches: int(since.ingest.failed),
    }, t));
    lines.push(lp('pipeline', { role: 'stream', instance: 'stream-0' }, {
      readings: int(readings), lag: int(200 + rnd() * 800),
      influx_backlog: int(rnd() * 200), influx_retries: int(since.stream.retries), influx_failed_batches: int(since.stream.failed),
    }, t));
    for (const reason of ['not_json', 'future_timestamp', 'meter_mismatch']) {
      if (rnd() < 0.02) lines.push(lp('dlq', { reason, instance: 'ingest-1' }, { count: int(1 + Math.floor(rnd() * 3)) }, t));
    }
  }
  return lines;
}

const FALLBACK_RANGE: Range = { fromMs: FALLBACK_START, toMs: FALLBACK_START + FALLBACK_DAYS * DAY };

// ----------------------------------------------------------------------------------------------------------------

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

async function writeLines(url: string, db: string, lines: string[]): Promise<void> {
  for (let i = 0; i < lines.length; i += 5000) {
    const res = await fetch(`${url}/write?db=${encodeURIComponent(db)}&precision=ms`, { method: 'POST', body: lines.slice(i, i + 5000).join('\n') });
    if (res.status !== 204) throw new Error(`write failed ${res.status}: ${await res.text()}`);
  }
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

describe('dashboards against a real InfluxDB (data: FALLBACK_SEEDED_FLEET, not yet the pipeline)', () => {
  let influx: LocalService;
  const db = uniquePrefix('dash');
  const dashboards = loadDashboards();

  beforeAll(async () => {
    influx = await startInflux();
    await influxql(influx.url, db, `CREATE DATABASE "${db}"`);
    await writeLines(influx.url, db, FALLBACK_SEEDED_FLEET(7));
  });

  afterAll(async () => {
    await influx?.destroy();
  });

  it('the fallback data holds every measurement of the contract', async () => {
    const names = (await influxql(influx.url, db, 'SHOW MEASUREMENTS')).flatMap((s) => s.values.map((r) => r[0]));
    expect(names.sort()).toEqual(['alert', 'anomaly', 'baseline', 'billing_daily', 'dlq', 'feeder_load', 'interval', 'pipeline', 'reading', 'system_load']);
  });

  it('finds the six dashboards', () => {
    expect(dashboards.map((d) => d.uid).sort()).toEqual([
      'meterflow-alerts', 'meterflow-billing', 'meterflow-feeders', 'meterflow-fleet', 'meterflow-meter', 'meterflow-pipeline',
    ]);
  });

  for (const d of dashboards) {
    it(`${d.title}: every query returns data`, async () => {
      const run = (q: string): Promise<InfluxSeries[]> => influxql(influx.url, db, q);
      const resolved = await resolveVariables(d, run, FALLBACK_RANGE);
      const outcomes: Outcome[] = [];
      for (const q of queriesOf(d)) outcomes.push(await runQuery(d, q, resolved, run, FALLBACK_RANGE));
      const failed = outcomes.filter((o) => !o.ok).map((o) => `${o.query.kind} "${o.query.title}" ${o.query.refId}: ${o.error ?? 'no data'}\n    ${o.expanded}`);
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
    return influxql(influx.url, db, expandQuery(q, { range: FALLBACK_RANGE, variables, values, datasourceMin: DATASOURCE_MIN_INTERVAL }));
  }
  const nonNull = (s: InfluxSeries | undefined, column: string): unknown[] => {
    const i = s?.columns.indexOf(column) ?? -1;
    return (s?.values ?? []).map((r) => r[i]).filter((v) => v !== null);
  };

  // Exact answers that follow from how FALLBACK_SEEDED_FLEET was built; they prove the queries mean what the
  // panels say. When the data comes from the simulated pipeline run, take the expected values from its truth file.
  describe('panel queries compute what the operator reads (fallback data)', () => {
    it('open alerts by severity: the escalated drop counts once, as critical; resolved ones do not count', async () => {
      // The panel's query gives the latest change of each alert; the panel then counts the unresolved ones by severity.
      const series = await panel('meterflow-fleet', 'Open alerts by severity', 'A');
      const latest = series.map((s) => [s.tags.type, s.tags.subject, nonNull(s, 'state')[0], nonNull(s, 'sev')[0]]).sort();
      expect(latest).toEqual([
        ['drop', 'M-0009', 'open', 'critical'],
        ['feederOverload', 'T-1', 'resolved', 'major'],
        ['outage', 'T-3', 'resolved', 'critical'],
        ['reverseFlow', 'M-0010', 'open', 'major'],
        ['spike', 'M-0003', 'resolved', 'warning'],
      ]);
    });

    it('outage extent: 6 meters on T-3 without data for 2 hours, 1 of them critical', async () => {
      const all = await panel('meterflow-feeders', 'Customers without supply data per transformer', 'A');
      const t3 = all.find((s) => s.tags.transformer === 'T-3');
      // Day 1 12:00 is M-0002's own communication gap; day 2 08:00 and 09:00 the outage.
      expect(nonNull(t3, 'count')).toEqual([1, 6, 6]);
      expect(all.filter((s) => s.tags.transformer !== 'T-3').flatMap((s) => nonNull(s, 'count'))).toEqual([]);
      const critical = await panel('meterflow-feeders', 'Critical customers without supply data', 'A');
      expect(critical.map((s) => [s.tags.transformer, nonNull(s, 'count')])).toEqual([['T-3', [1, 1]]]);
    });

    it('theft and tamper suspects: M-0009 drop and M-0010 reverse flow, tamper and flatline', async () => {
      const series = await panel('meterflow-alerts', 'Theft and tamper suspects', 'A');
      const rows = series.map((s) => [s.tags.meter, s.tags.type, nonNull(s, 'anomalous intervals')[0]]).sort();
      expect(rows).toEqual([['M-0009', 'drop', 8], ['M-0010', 'flatline', 1], ['M-0010', 'reverseFlow', 8], ['M-0010', 'tamper', 1]]);
    });

    it('estimated intervals of one meter: M-0002 has its one-hour gap plus the two-hour outage', async () => {
      const series = await panel('meterflow-meter', 'Estimated intervals', 'A', { meter: ['M-0002'] });
      expect(nonNull(series[0], 'count')).toEqual([12]);
    });

    it('period reads: start register + energy = end register, and the bands add up to the energy, for every meter', async () => {
      const reads = await panel('meterflow-billing', 'Period reads', 'A');
      expect(reads).toHaveLength(24);
      for (const s of reads) {
        const [start] = nonNull(s, 'start register Wh');
        const [end] = nonNull(s, 'end register Wh');
        const [total] = nonNull(s, 'total Wh');
        const bands = ['sum_band_peak_wh', 'sum_band_flat_wh', 'sum_band_valley_wh'].map((c) => nonNull(s, c)[0]);
        expect(typeof start === 'number' && typeof total === 'number' ? start + total : undefined, s.tags.meter).toBe(end);
        expect(bands.reduce((a: number, b) => a + (typeof b === 'number' ? b : Number.NaN), 0), s.tags.meter).toBe(total);
      }
    });

    it('estimated share per day: M-0002\'s 4-interval gap on day 1, the T-3 outage on day 2', async () => {
      const series = await panel('meterflow-billing', 'Estimated share per day', 'A');
      // 24 meters × 96 intervals a day; 4 estimated on day 1, 6 meters × 8 on day 2.
      expect(nonNull(series[0], 'estimated share')).toEqual([4 / 2304, 48 / 2304, 0]);
    });

    it('outages: one alert for T-3 with the customers affected, the critical ones and the duration', async () => {
      const series = await panel('meterflow-feeders', 'Outages', 'A');
      const rows = series.flatMap((s) => s.values.map((v) => Object.fromEntries(s.columns.map((c, i) => [c, v[i]]))));
      expect(rows.map((r) => [r.subject, r.state, r.customers_affected, r.critical_customers, r.duration_s])).toEqual([
        ['T-3', 'open', 6, 1, null],
        ['T-3', 'resolved', 6, 1, 6300],
      ]);
    });
  });

  it('an empty database yields no data for the same queries (the check can fail)', async () => {
    const empty = uniquePrefix('empty');
    await influxql(influx.url, empty, `CREATE DATABASE "${empty}"`);
    const d = dashboards.find((x) => x.uid === 'meterflow-fleet');
    expect(d).toBeDefined();
    if (d === undefined) return;
    const values = new Map<string, VariableValue>(variablesOf(d).map((v) => [v.name, { all: true }]));
    const panels = queriesOf(d).filter((q) => q.kind === 'panel');
    let withData = 0;
    for (const q of panels) {
      const expanded = expandQuery(q, { range: FALLBACK_RANGE, variables: variablesOf(d), values, datasourceMin: DATASOURCE_MIN_INTERVAL });
      if (hasData(await influxql(influx.url, empty, expanded))) withData++;
    }
    expect(panels.length).toBeGreaterThan(5);
    expect(withData).toBe(0);
  });
});
