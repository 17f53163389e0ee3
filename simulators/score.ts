import type { AnomalyType } from '../src/contracts/events.js';
import { DETECTED_BY, MAGNITUDES, TRUTH_ANOMALIES, type Magnitude, type TruthAnomaly, type TruthRecord } from './truth.js';
import { medianSorted } from 'simple-statistics';

/**
 * Pure scoring of a pipeline run against the simulator's ground truth: detection quality per injected type (an
 * injection counts as detected by the detector types DETECTED_BY maps it to), detection delay in event time,
 * duplicate alerts, and billing exactness against the ledger. Interval-by-interval scoring is in score-intervals.ts.
 */

/** An alert (or an episode of anomaly events) as the scorer needs it; times are event time, epoch ms. */
export interface ScoredAlert {
  id: string;
  key: string;
  type: AnomalyType;
  subject: string;
  meterId: string | null;
  transformerId: string | null;
  customerId: string | null;
  firstSeen: number;
  lastSeen: number;
}

/** One point of the `anomaly` measurement (`subject` is its `meter` tag). */
export interface ScoredEvent {
  type: AnomalyType;
  subject: string;
  ts: number;
  status: 'firing' | 'clear';
}

export interface LedgerPoint {
  meterId: string;
  tsMs: number;
  importWh: number;
  published: boolean;
}

/** A billing read over a range of days: what billing would invoice for the meter. */
export interface BilledTotal {
  meterId: string;
  fromMs: number;
  toMs: number;
  totalWh: number;
}

export interface ScoreOptions {
  /** An alert may start this long after the injection ended and still count as its detection. */
  graceMs: number;
}

export const DEFAULT_SCORE_OPTIONS: ScoreOptions = { graceMs: 2 * 3_600_000 };

export interface TypeScore {
  type: TruthAnomaly;
  magnitude: Magnitude | 'all';
  injected: number;
  detected: number;
  /**
   * Alerts of the types that detect this injection type (DETECTED_BY; its own name for the clear types) matching an
   * injection those types detect (any magnitude).
   */
  truePositives: number;
  /** Those alerts explained by no injection (neither one they detect nor an `expectedAlso`). */
  falsePositives: number;
  /** Those alerts another injection may rightly raise (not scored). */
  explained: number;
  precision: number | null;
  recall: number | null;
  f1: number | null;
  medianDelayMin: number | null;
  p95DelayMin: number | null;
}

export interface BillingDifference {
  meterId: string;
  billedWh: number;
  ledgerWh: number;
  diffWh: number;
}

export interface BillingScore {
  /** Meters whose billed total could be checked: the ledger has a published register at both ends. */
  compared: number;
  /** Meters whose range starts or ends on a register no reading was sent for (the pipeline can only estimate). */
  unverifiable: number;
  /** Billed meters missing from the ledger, or without ledger rows at the range ends. */
  missingInLedger: number;
  /** Meters differing with no register reset in the range. */
  differences: BillingDifference[];
  /** Meters differing whose range holds a meter replacement (a register reset), listed apart. */
  acrossReset: BillingDifference[];
}

export interface DuplicateAlert {
  alertId: string;
  key: string;
  /** `overlap`: another alert with the same key was open over the same event time; `sameInjection`: a second alert for one injection. */
  why: 'overlap' | 'sameInjection';
}

export interface ScoreReport {
  source: 'alerts' | 'events';
  rows: TypeScore[];
  /** Over every injection of a magnitude (and all): detected / injected; median delay. */
  overall: Array<{ magnitude: Magnitude | 'all'; injected: number; detected: number; recall: number | null; medianDelayMin: number | null }>;
  /** Every alert of a detecting type judged once: true (detects an injection), explained, or false. */
  alertVerdicts: { truePositives: number; falsePositives: number; explained: number; precision: number | null };
  missed: Array<{ id: string; type: string; subject: string; magnitude: Magnitude }>;
  falsePositives: Array<{ alertId: string; type: AnomalyType; subject: string; firstSeen: number }>;
  duplicates: DuplicateAlert[];
  billing: BillingScore | null;
}

/** Every detector type that detects some injection type. */
const DETECTOR_TYPES: ReadonlySet<AnomalyType> = new Set(Object.values(DETECTED_BY).flat());
const TRUTH_SET: ReadonlySet<string> = new Set(TRUTH_ANOMALIES);
const isTruthAnomaly = (x: string): x is TruthAnomaly => TRUTH_SET.has(x);
/** The detector types that detect an injection type (none for transport faults). */
const detectorsOf = (type: string): readonly AnomalyType[] => (isTruthAnomaly(type) ? DETECTED_BY[type] : []);
const detects = (alertType: AnomalyType, t: TruthRecord): boolean => detectorsOf(t.type).includes(alertType);

/** Does the alert concern the injection's subject (its meter, customer, transformer or any meter it touches)? */
export function concerns(a: ScoredAlert, t: TruthRecord): boolean {
  if (a.subject === t.subject) return true;
  if (a.meterId !== null && t.meters.includes(a.meterId)) return true;
  if (t.meterId === undefined && a.transformerId !== null && a.meterId === null && a.transformerId === t.transformerId) return true;
  if (t.customerId !== undefined && (a.customerId === t.customerId || a.subject === t.customerId)) return true;
  return t.meters.includes(a.subject) || (t.meterId === undefined && a.subject === t.transformerId);
}

/**
 * Injected load (a spike, a customer over contract) also loads the meter's transformer and the system: an overload
 * alert there during the injection is its consequence, not a false positive (truth.ts lists meter-level effects only).
 */
export function loadConsequence(a: ScoredAlert, t: TruthRecord): boolean {
  if (t.type !== 'spike' && t.type !== 'customerPeak') return false;
  return (a.type === 'feederOverload' && a.subject === t.transformerId) || a.type === 'systemPeak';
}

export function overlaps(a: ScoredAlert, t: TruthRecord, opts: ScoreOptions): boolean {
  return a.firstSeen <= t.endMs + opts.graceMs && a.lastSeen >= t.startMs;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] ?? null;
}

export function median(sorted: readonly number[]): number | null {
  return sorted.length === 0 ? null : medianSorted([...sorted]);
}

export const ratio = (num: number, den: number): number | null => (den === 0 ? null : num / den);
export function f1(p: number | null, r: number | null): number | null {
  if (p === null || r === null) return null;
  return p + r === 0 ? 0 : (2 * p * r) / (p + r);
}

/**
 * Anomaly events grouped into episodes per (type, subject), shaped like alerts: an episode opens at a firing
 * event and ends at the `clear` after it (or at the last firing one).
 */
export function episodesFromEvents(events: readonly ScoredEvent[]): ScoredAlert[] {
  const byKey = new Map<string, ScoredEvent[]>();
  for (const e of events) {
    const k = `${e.type}:${e.subject}`;
    const list = byKey.get(k);
    if (list) list.push(e);
    else byKey.set(k, [e]);
  }
  const out: ScoredAlert[] = [];
  for (const [key, list] of byKey) {
    list.sort((x, y) => x.ts - y.ts || (x.status === y.status ? 0 : x.status === 'firing' ? -1 : 1));
    let open: ScoredAlert | undefined;
    for (const e of list) {
      if (e.status === 'firing') {
        if (open) open.lastSeen = e.ts;
        else {
          open = {
            id: `${key}:${e.ts}`,
            key,
            type: e.type,
            subject: e.subject,
            meterId: null,
            transformerId: null,
            customerId: null,
            firstSeen: e.ts,
            lastSeen: e.ts,
          };
          out.push(open);
        }
      } else open = undefined;
    }
  }
  return out.sort((x, y) => x.firstSeen - y.firstSeen || x.id.localeCompare(y.id));
}

/**
 * An injection that is one stretch of abnormal use. A recurring one — several spans (HVAC left on night after
 * night) or a day profile moved every day (`shape`: each morning above, each evening below) — is several episodes
 * with normal hours between them, and an alert per episode is right: only the overlap rule applies to them.
 */
function oneEpisode(t: TruthRecord): boolean {
  return t.type !== 'shape' && (t.spans === undefined || t.spans.length <= 1);
}

/** Alerts that repeat one another: same key over the same event time, or a second alert for one (single-episode) injection. */
export function findDuplicates(alerts: readonly ScoredAlert[], truth: readonly TruthRecord[], opts: ScoreOptions): DuplicateAlert[] {
  const byKey = new Map<string, ScoredAlert[]>();
  for (const a of alerts) {
    const list = byKey.get(a.key);
    if (list) list.push(a);
    else byKey.set(a.key, [a]);
  }
  const out: DuplicateAlert[] = [];
  for (const [key, list] of byKey) {
    list.sort((x, y) => x.firstSeen - y.firstSeen || x.id.localeCompare(y.id));
    let coveredUntil = -Infinity;
    const claimed = new Set<string>();
    for (const a of list) {
      const injections = truth
        .filter((t) => t.kind === 'anomaly' && detects(a.type, t) && concerns(a, t) && overlaps(a, t, opts) && oneEpisode(t))
        .map((t) => t.id);
      if (a.firstSeen <= coveredUntil) out.push({ alertId: a.id, key, why: 'overlap' });
      else if (injections.length > 0 && injections.every((id) => claimed.has(id))) out.push({ alertId: a.id, key, why: 'sameInjection' });
      for (const id of injections) claimed.add(id);
      coveredUntil = Math.max(coveredUntil, a.lastSeen);
    }
  }
  return out;
}

/**
 * Import energy between two ledger points, booked the way the pipeline books a meter exchange (domain/intervals.ts):
 * across a register decrease whose replacement (truth `registerReset`, published as a `meterExchange` work order)
 * was installed in [prev, cur], the old meter's stretch (removal − prev) plus the new meter's (cur − newStartWh).
 * The simulator installs at an interval end, where `prev` is the removal read itself, so the old meter's stretch is
 * 0 there. A decrease without a replacement on record counts the new meter from 0 Wh.
 */
function ledgerEnergy(
  rows: readonly LedgerPoint[],
  fromMs: number,
  toMs: number,
  newStarts: readonly NewMeter[],
): { wh: number; startPublished: boolean; endPublished: boolean; resets: number } | undefined {
  const startIdx = rows.findIndex((r) => r.tsMs === fromMs);
  const endIdx = rows.findIndex((r) => r.tsMs === toMs);
  const start = rows[startIdx];
  const end = rows[endIdx];
  if (start === undefined || end === undefined || endIdx < startIdx) return undefined;
  let wh = 0;
  let resets = 0;
  for (let i = startIdx + 1; i <= endIdx; i++) {
    const prev = rows[i - 1];
    const cur = rows[i];
    if (prev === undefined || cur === undefined) continue;
    if (cur.importWh >= prev.importWh) {
      wh += cur.importWh - prev.importWh;
      continue;
    }
    resets++;
    const swap = newStarts.find((n) => n.startMs >= prev.tsMs && n.startMs <= cur.tsMs && n.wh <= cur.importWh);
    const removal = swap === undefined ? 0 : (rows.find((r) => r.tsMs === swap.startMs)?.importWh ?? prev.importWh) - prev.importWh;
    wh += Math.max(0, removal) + cur.importWh - (swap?.wh ?? 0);
  }
  return { wh, startPublished: start.published, endPublished: end.published, resets };
}

/** A replacement meter: installed in the step starting at `startMs` with its register at `wh`. */
export interface NewMeter {
  startMs: number;
  wh: number;
}

/** `newStarts`: per meter, its replacement meters (truth `registerReset` records, see `newStartsOf`). */
export function scoreBilling(
  billed: readonly BilledTotal[],
  ledger: readonly LedgerPoint[],
  newStarts: ReadonlyMap<string, readonly NewMeter[]> = new Map(),
): BillingScore {
  const byMeter = new Map<string, LedgerPoint[]>();
  for (const p of ledger) {
    const list = byMeter.get(p.meterId);
    if (list) list.push(p);
    else byMeter.set(p.meterId, [p]);
  }
  for (const list of byMeter.values()) list.sort((a, b) => a.tsMs - b.tsMs);
  const out: BillingScore = { compared: 0, unverifiable: 0, missingInLedger: 0, differences: [], acrossReset: [] };
  for (const b of [...billed].sort((x, y) => x.meterId.localeCompare(y.meterId))) {
    const e = ledgerEnergy(byMeter.get(b.meterId) ?? [], b.fromMs, b.toMs, newStarts.get(b.meterId) ?? []);
    if (e === undefined) {
      out.missingInLedger++;
      continue;
    }
    if (!e.startPublished || !e.endPublished) {
      out.unverifiable++;
      continue;
    }
    out.compared++;
    if (e.wh === b.totalWh) continue;
    const diff = { meterId: b.meterId, billedWh: b.totalWh, ledgerWh: e.wh, diffWh: b.totalWh - e.wh };
    if (e.resets > 0) out.acrossReset.push(diff);
    else out.differences.push(diff);
  }
  return out;
}

/** Replacement meters per meter, from `registerReset` truth records. */
export function newStartsOf(truth: readonly TruthRecord[]): Map<string, NewMeter[]> {
  const out = new Map<string, NewMeter[]>();
  for (const t of truth) {
    const v = t.params.newStartWh;
    if (t.type !== 'registerReset' || t.meterId === undefined || typeof v !== 'number') continue;
    out.set(t.meterId, [...(out.get(t.meterId) ?? []), { startMs: t.startMs, wh: v }]);
  }
  return out;
}

export interface ScoreInput {
  truth: readonly TruthRecord[];
  /** Alerts (preferred), or episodes built from anomaly events with `episodesFromEvents`. */
  alerts: readonly ScoredAlert[];
  source: 'alerts' | 'events';
  billed?: readonly BilledTotal[];
  ledger?: readonly LedgerPoint[];
}

export function score(input: ScoreInput, opts: ScoreOptions = DEFAULT_SCORE_OPTIONS): ScoreReport {
  const anomalies = input.truth.filter((t) => t.kind === 'anomaly');
  const alerts = input.alerts.filter((a) => DETECTOR_TYPES.has(a.type));
  const rows: TypeScore[] = [];
  const missed: ScoreReport['missed'] = [];
  const falsePositives: ScoreReport['falsePositives'] = [];
  const listed = new Set<string>();

  // Each alert is judged once: it detects an injection its type can detect, another injection explains it, or it is false.
  const verdict = new Map<string, 'tp' | 'explained' | 'fp'>();
  for (const a of alerts) {
    if (anomalies.some((t) => detects(a.type, t) && concerns(a, t) && overlaps(a, t, opts))) verdict.set(a.id, 'tp');
    else if (input.truth.some((t) => ((t.expectedAlso.includes(a.type) && concerns(a, t)) || loadConsequence(a, t)) && overlaps(a, t, opts)))
      verdict.set(a.id, 'explained');
    else verdict.set(a.id, 'fp');
  }

  for (const type of TRUTH_ANOMALIES) {
    // An outage is the alert service's correlation of many meters' events, never an event itself.
    if (input.source === 'events' && ALERT_ONLY.has(type)) continue;
    const by: readonly AnomalyType[] = DETECTED_BY[type];
    const ofType = alerts.filter((a) => by.includes(a.type));
    const injected = anomalies.filter((t) => t.type === type);
    let tp = 0;
    let fp = 0;
    let explained = 0;
    for (const a of ofType) {
      const v = verdict.get(a.id);
      if (v === 'tp') tp++;
      else if (v === 'explained') explained++;
      else {
        fp++;
        if (!listed.has(a.id)) falsePositives.push({ alertId: a.id, type: a.type, subject: a.subject, firstSeen: a.firstSeen });
        listed.add(a.id);
      }
    }
    const precision = ratio(tp, tp + fp);
    const perMagnitude = (magnitude: Magnitude | 'all'): TypeScore => {
      const records = injected.filter((t) => magnitude === 'all' || t.magnitude === magnitude);
      const delays: number[] = [];
      for (const t of records) {
        const hits = ofType.filter((a) => concerns(a, t) && overlaps(a, t, opts));
        if (hits.length === 0) {
          if (magnitude === 'all') missed.push({ id: t.id, type, subject: t.subject, magnitude: t.magnitude });
          continue;
        }
        delays.push(Math.max(0, Math.min(...hits.map((a) => a.firstSeen)) - t.startMs) / 60_000);
      }
      delays.sort((a, b) => a - b);
      const recall = ratio(delays.length, records.length);
      return {
        type,
        magnitude,
        injected: records.length,
        detected: delays.length,
        truePositives: tp,
        falsePositives: fp,
        explained,
        precision,
        recall,
        f1: f1(precision, recall),
        medianDelayMin: median(delays),
        p95DelayMin: percentile(delays, 95),
      };
    };
    rows.push(perMagnitude('all'), ...MAGNITUDES.map(perMagnitude));
  }
  falsePositives.sort((x, y) => x.firstSeen - y.firstSeen || x.alertId.localeCompare(y.alertId));

  const overall = (['all', ...MAGNITUDES] as const).map((magnitude) => {
    const records = anomalies.filter((t) => (magnitude === 'all' || t.magnitude === magnitude) && !(input.source === 'events' && ALERT_ONLY.has(t.type)));
    const delays: number[] = [];
    for (const t of records) {
      const hits = alerts.filter((a) => detects(a.type, t) && concerns(a, t) && overlaps(a, t, opts));
      if (hits.length > 0) delays.push(Math.max(0, Math.min(...hits.map((a) => a.firstSeen)) - t.startMs) / 60_000);
    }
    delays.sort((a, b) => a - b);
    return { magnitude, injected: records.length, detected: delays.length, recall: ratio(delays.length, records.length), medianDelayMin: median(delays) };
  });
  const verdicts = [...verdict.values()];
  const tpAll = verdicts.filter((v) => v === 'tp').length;
  const fpAll = verdicts.filter((v) => v === 'fp').length;

  return {
    source: input.source,
    rows,
    overall,
    alertVerdicts: { truePositives: tpAll, falsePositives: fpAll, explained: verdicts.length - tpAll - fpAll, precision: ratio(tpAll, tpAll + fpAll) },
    missed,
    falsePositives,
    duplicates: input.source === 'alerts' ? findDuplicates(alerts, input.truth, opts) : [],
    billing: input.billed !== undefined && input.ledger !== undefined ? scoreBilling(input.billed, input.ledger, newStartsOf(input.truth)) : null,
  };
}

/** Injected types that only the alert service detects (scored from alerts, not from anomaly events). */
const ALERT_ONLY: ReadonlySet<string> = new Set(['outage']);

const fmt = (x: number | null, digits = 2): string => (x === null ? '-' : x.toFixed(digits));

/** The report as a plain-text table, one row per type and magnitude that had injections or alerts. */
export function formatReport(r: ScoreReport): string {
  const head = ['type', 'magnitude', 'injected', 'detected', 'recall', 'precision', 'F1', 'TP', 'FP', 'median delay min', 'p95 delay min'];
  const lines: string[][] = [head];
  for (const row of r.rows) {
    if (row.injected === 0 && (row.magnitude !== 'all' || row.truePositives + row.falsePositives === 0)) continue;
    lines.push([
      row.type,
      row.magnitude,
      String(row.injected),
      String(row.detected),
      fmt(row.recall),
      fmt(row.precision),
      fmt(row.f1),
      String(row.truePositives),
      String(row.falsePositives),
      fmt(row.medianDelayMin, 0),
      fmt(row.p95DelayMin, 0),
    ]);
  }
  const widths = head.map((_, i) => Math.max(...lines.map((l) => (l[i] ?? '').length)));
  const table = lines.map((l) =>
    l
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd(),
  );
  const recalls = r.overall
    .filter((o) => o.injected > 0)
    .map((o) => `${o.magnitude} ${fmt(o.recall)} (${o.detected}/${o.injected}, median delay ${fmt(o.medianDelayMin, 0)} min)`);
  const v = r.alertVerdicts;
  const out = [
    `detection (from ${r.source})`,
    ...table,
    `overall recall: ${recalls.join('; ')}`,
    `overall precision: ${fmt(v.precision)} (${v.truePositives} TP, ${v.falsePositives} FP, ${v.explained} explained)`,
    ...(r.source === 'alerts' ? [`duplicate alerts: ${r.duplicates.length}`] : []),
  ];
  if (r.billing) {
    const b = r.billing;
    out.push(
      `billing: ${b.compared} meters compared, ${b.differences.length} differ, ${b.acrossReset.length} differ across a meter replacement, ` +
        `${b.unverifiable} unverifiable (estimated ends), ${b.missingInLedger} not in ledger`,
    );
    for (const d of [...b.differences, ...b.acrossReset].slice(0, 12))
      out.push(`  ${d.meterId}: billed ${d.billedWh} Wh, ledger ${d.ledgerWh} Wh (${d.diffWh > 0 ? '+' : ''}${d.diffWh})`);
  }
  return out.join('\n');
}
