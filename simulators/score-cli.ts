import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { ANOMALY_TYPES, type AnomalyType } from '../src/contracts/events.js';
import type { AppConfig } from '../src/shared/config.js';
import { readCsvRows } from '../src/shared/csv.js';
import { createInflux, qid, type Influx } from '../src/shared/influx.js';
import type { Logger } from '../src/shared/logger.js';
import {
  DEFAULT_SCORE_OPTIONS,
  episodesFromEvents,
  formatReport,
  score,
  type BilledTotal,
  type LedgerPoint,
  type ScoredAlert,
  type ScoredEvent,
  type ScoreReport,
} from './score.js';
import { DEFAULT_INTERVAL_OPTIONS, formatIntervalReport, scoreIntervals, type IntervalReport, type MarkInput } from './score-intervals.js';
import { MAGNITUDES, TRANSPORT_FAULTS, TRUTH_ANOMALIES, type TruthRecord } from './truth.js';

/** I/O around the pure scorer: truth.jsonl and ledger.csv from disk, alerts and billing reads from the API, anomaly events from InfluxDB. */

const Str = Type.String();
const TruthSchema = Type.Object({
  id: Str,
  kind: Type.Enum(['anomaly', 'transport'] as const),
  type: Type.Enum([...TRUTH_ANOMALIES, ...TRANSPORT_FAULTS]),
  variant: Type.Optional(Str),
  magnitude: Type.Enum(MAGNITUDES),
  subjectKind: Type.Enum(['meter', 'transformer'] as const),
  subject: Str,
  meterId: Type.Optional(Str),
  customerId: Type.Optional(Str),
  customerClass: Type.Optional(Type.Enum(['residential', 'commercial', 'industrial', 'critical'] as const)),
  intervalMinutes: Type.Optional(Type.Number()),
  transformerId: Str,
  feederId: Str,
  meters: Type.Array(Str),
  start: Str,
  end: Str,
  startMs: Type.Number(),
  endMs: Type.Number(),
  spans: Type.Optional(Type.Array(Type.Tuple([Type.Number(), Type.Number()]))),
  params: Type.Record(Str, Type.Union([Type.Number(), Str, Type.Boolean()])),
  expectedAlso: Type.Array(Type.Enum(ANOMALY_TYPES)),
});
const checkTruth = Compile(TruthSchema);

export class ScoreInputError extends Error {
  override name = 'ScoreInputError';
}

export function parseTruth(text: string, source = 'truth'): TruthRecord[] {
  const out: TruthRecord[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (cause) {
      throw new ScoreInputError(`${source}:${i + 1}: not JSON`, { cause });
    }
    if (!checkTruth.Check(v)) throw new ScoreInputError(`${source}:${i + 1}: not a truth record`);
    const r: Static<typeof TruthSchema> = v;
    out.push(r);
  });
  return out;
}

/** ledger.csv (`meterId,tsMs,importWh,exportWh,published`), streamed: a CI fleet has over a million rows. */
export async function readLedger(path: string, keep?: (meterId: string, tsMs: number) => boolean): Promise<LedgerPoint[]> {
  const out: LedgerPoint[] = [];
  let n = 1;
  for await (const [meterId, ts, imp, , pub] of readCsvRows(path)) {
    n++;
    const tsMs = Number(ts);
    const importWh = Number(imp);
    if (meterId === undefined || !Number.isInteger(tsMs) || !Number.isInteger(importWh)) throw new ScoreInputError(`${path}:${n}: not a ledger row`);
    if (keep && !keep(meterId, tsMs)) continue;
    out.push({ meterId, tsMs, importWh, published: pub === '1' });
  }
  return out;
}

export interface ApiClient {
  url: string;
  token?: string;
}

async function getJson(api: ApiClient, path: string): Promise<unknown> {
  const res = await fetch(`${api.url.replace(/\/$/, '')}${path}`, {
    headers: api.token === undefined ? {} : { authorization: `Bearer ${api.token}` },
  });
  if (!res.ok) throw new ScoreInputError(`GET ${path}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
  return res.json();
}

const NullableStr = Type.Union([Str, Type.Null()]);
const AlertPageSchema = Type.Object({
  items: Type.Array(
    Type.Object({
      id: Str,
      key: Str,
      type: Type.Enum(ANOMALY_TYPES),
      subject: Str,
      meterId: NullableStr,
      transformerId: NullableStr,
      customerId: NullableStr,
      firstSeen: Str,
      lastSeen: Str,
    }),
  ),
  nextCursor: NullableStr,
});
const checkAlertPage = Compile(AlertPageSchema);

/** Every alert (any state), through the API's cursor paging. */
export async function fetchAlerts(api: ApiClient): Promise<ScoredAlert[]> {
  const out: ScoredAlert[] = [];
  let cursor: string | null = null;
  do {
    const body = await getJson(api, `/api/v1/alerts?limit=500${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`);
    if (!checkAlertPage.Check(body)) throw new ScoreInputError('GET /api/v1/alerts: unexpected response shape');
    const page: Static<typeof AlertPageSchema> = body;
    for (const a of page.items) {
      out.push({ ...a, firstSeen: Date.parse(a.firstSeen), lastSeen: Date.parse(a.lastSeen) });
    }
    cursor = page.nextCursor;
  } while (cursor !== null);
  return out;
}

const BillingPageSchema = Type.Object({
  items: Type.Array(Type.Object({ meterId: Str, from: Str, to: Str, totalWh: Type.Integer() })),
  nextCursor: NullableStr,
});
const checkBillingPage = Compile(BillingPageSchema);

/** Per meter, the billed import over local days [fromDay, toDay). */
export async function fetchBilled(api: ApiClient, fromDay: string, toDay: string): Promise<BilledTotal[]> {
  const out: BilledTotal[] = [];
  let cursor: string | null = null;
  do {
    const body = await getJson(
      api,
      `/api/v1/billing/reads?from=${fromDay}&to=${toDay}&limit=1000${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`,
    );
    if (!checkBillingPage.Check(body)) throw new ScoreInputError('GET /api/v1/billing/reads: unexpected response shape');
    const page: Static<typeof BillingPageSchema> = body;
    for (const r of page.items) out.push({ meterId: r.meterId, fromMs: Date.parse(r.from), toMs: Date.parse(r.to), totalWh: r.totalWh });
    cursor = page.nextCursor;
  } while (cursor !== null);
  return out;
}

const isAnomalyType = (t: string): t is AnomalyType => (ANOMALY_TYPES as readonly string[]).includes(t);

/** Firing and clear points of the `anomaly` measurement. */
export async function fetchEvents(influx: Influx): Promise<ScoredEvent[]> {
  const series = await influx.query(`SELECT ${qid('status')} FROM ${qid('anomaly')} GROUP BY ${qid('meter')}, ${qid('type')}`);
  const out: ScoredEvent[] = [];
  for (const s of series) {
    const subject = s.tags.meter;
    const type = s.tags.type;
    const ti = s.columns.indexOf('time');
    const si = s.columns.indexOf('status');
    if (subject === undefined || type === undefined || !isAnomalyType(type)) continue;
    for (const row of s.values) {
      const ts = row[ti];
      const status = row[si];
      if (typeof ts !== 'number' || (status !== 'firing' && status !== 'clear')) continue;
      out.push({ type, subject, ts, status });
    }
  }
  return out;
}

/**
 * The interval marks: `interval` points whose `anomaly_score` is above 0 (the mark's type in `anomaly`), at the
 * interval start. Their end is left to the scorer (the meter's interval length from the truth).
 */
export async function fetchMarks(influx: Influx): Promise<MarkInput[]> {
  const series = await influx.query(
    `SELECT ${qid('anomaly')}, ${qid('anomaly_score')} FROM ${qid('interval')} WHERE ${qid('anomaly_score')} > 0 GROUP BY ${qid('meter')}`,
  );
  const out: MarkInput[] = [];
  for (const s of series) {
    const meterId = s.tags.meter;
    const ti = s.columns.indexOf('time');
    const ai = s.columns.indexOf('anomaly');
    if (meterId === undefined) continue;
    for (const row of s.values) {
      const start = row[ti];
      const type = row[ai];
      if (typeof start !== 'number') continue;
      out.push({ meterId, start, type: typeof type === 'string' && type !== '' ? type : 'unknown' });
    }
  }
  return out;
}

const dayOf = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

export interface ScoreRun {
  alerts?: ScoreReport;
  events?: ScoreReport;
  intervals?: IntervalReport;
}

/**
 * `meterflow score --truth truth.jsonl [--ledger ledger.csv] [--api URL --token T] [--no-influx] [--from DAY --to DAY] [--tolerance-hours 12] [--json out.json]`.
 * Scores alerts (API), anomaly events and interval marks (InfluxDB, from the config); billing when a ledger is given.
 */
export async function runScoreCommand(argv: string[], config: AppConfig, log: Logger): Promise<number> {
  const { values: o } = parseArgs({
    args: argv,
    strict: true,
    options: {
      truth: { type: 'string' },
      ledger: { type: 'string' },
      api: { type: 'string' },
      token: { type: 'string' },
      json: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      'no-influx': { type: 'boolean' },
      'grace-min': { type: 'string' },
      'tolerance-hours': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (o.help || o.truth === undefined) {
    process.stdout.write(
      'meterflow score --truth truth.jsonl [--ledger ledger.csv] [--api URL] [--token T] [--from YYYY-MM-DD --to YYYY-MM-DD] [--no-influx] [--grace-min N] [--tolerance-hours H] [--json out.json]\n',
    );
    return o.help ? 0 : 2;
  }
  const truth = parseTruth(readFileSync(o.truth, 'utf8'), o.truth);
  const graceMin = o['grace-min'] === undefined ? DEFAULT_SCORE_OPTIONS.graceMs / 60_000 : Number(o['grace-min']);
  if (!Number.isFinite(graceMin) || graceMin < 0) throw new ScoreInputError(`--grace-min: expected minutes, got "${o['grace-min']}"`);
  const opts = { graceMs: graceMin * 60_000 };
  const toleranceHours = o['tolerance-hours'] === undefined ? DEFAULT_INTERVAL_OPTIONS.toleranceMs / 3_600_000 : Number(o['tolerance-hours']);
  if (!Number.isFinite(toleranceHours) || toleranceHours < 0) throw new ScoreInputError(`--tolerance-hours: expected hours, got "${o['tolerance-hours']}"`);
  const api: ApiClient = { url: o.api ?? `http://127.0.0.1:${config.api.port}` };
  // API_TOKENS holds hashes, not tokens: the token to present comes from --token.
  const token = o.token;
  if (token !== undefined) api.token = token;

  let billed: BilledTotal[] | undefined;
  let ledger: LedgerPoint[] | undefined;
  if (o.ledger !== undefined) {
    let fromDay = o.from;
    let toDay = o.to;
    if (fromDay === undefined || toDay === undefined) {
      // Whole days inside the simulated range: its first and last (partial, maybe unclosed) days left out.
      let first = Infinity;
      let lastTs = -Infinity;
      await readLedger(o.ledger, (_m, ts) => {
        first = Math.min(first, ts);
        lastTs = Math.max(lastTs, ts);
        return false;
      });
      if (!Number.isFinite(first)) throw new ScoreInputError(`${o.ledger}: no rows; give --from and --to`);
      fromDay ??= dayOf(first + 86_400_000);
      toDay ??= dayOf(lastTs - 86_400_000);
    }
    billed = await fetchBilled(api, fromDay, toDay);
    if (billed.length === 0) throw new ScoreInputError(`billing: no reads for ${fromDay} .. ${toDay}`);
    const lo = Math.min(...billed.map((b) => b.fromMs));
    const hi = Math.max(...billed.map((b) => b.toMs));
    ledger = await readLedger(o.ledger, (_m, ts) => ts >= lo && ts <= hi);
  }

  const run: ScoreRun = {};
  const alerts = await fetchAlerts(api);
  run.alerts = score({ truth, alerts, source: 'alerts', ...(billed && ledger ? { billed, ledger } : {}) }, opts);
  process.stdout.write(`${formatReport(run.alerts)}\n`);
  if (!o['no-influx']) {
    const influx = await createInflux(config.influx, log);
    try {
      const events = await fetchEvents(influx);
      run.events = score({ truth, alerts: episodesFromEvents(events), source: 'events' }, opts);
      process.stdout.write(`\n${formatReport(run.events)}\n`);
      const marks = await fetchMarks(influx);
      run.intervals = scoreIntervals(truth, marks, { ...DEFAULT_INTERVAL_OPTIONS, toleranceMs: toleranceHours * 3_600_000 });
      process.stdout.write(`\n${formatIntervalReport(run.intervals)}\n`);
    } finally {
      await influx.close();
    }
  }
  if (o.json !== undefined) writeFileSync(o.json, `${JSON.stringify(run, null, 2)}\n`);
  return 0;
}
