import { f1, ratio } from './score.js';
import { INTERVAL_SCORED, type Magnitude, type TruthRecord } from './truth.js';

/**
 * Interval-by-interval scoring, as the literature scores labelled consumption: every interval inside an injected
 * span is a label, every interval a detector marked is a flag.
 *
 * - Interval level: a label is found when a flag covers it; a flag is true when it overlaps a labelled interval.
 * - Tolerance (r): a label is found when a flag of the same meter starts within r of its start; a flag is false
 *   when no label of that meter starts within r of it.
 *
 * Both are reported pooled (counts summed over meters) and as means over meters:
 * - recall: mean over meters with at least one label;
 * - precision: mean over meters with at least one label and at least one flag;
 * - F1: mean over meters with at least one label of the meter's F1 (0 for a labelled meter with no flags).
 * Meters with flags and no labels (clean meters flagged) count in the pooled precision and are reported apart;
 * meters with neither are not scored. Flags on intervals excused by another injection (an outage, a silent meter,
 * a meter exchange, a transformer overload, reverse flow, or, for a group, an injection outside the group) count for nothing;
 * under the tolerance metric, neither do flags within r of such an injection.
 */

/** One interval a detector marked (IntervalMark, or a row of `interval` with `anomaly_score > 0`); `end` defaults to the meter's interval. */
export interface MarkInput {
  meterId: string;
  start: number;
  end?: number;
  type: string;
}

export interface IntervalScoreOptions {
  /** r of the tolerance metric, ms. */
  toleranceMs: number;
  /** Interval length of a meter whose truth records do not say (truth files from before `intervalMinutes`). */
  defaultIntervalMinutes: number;
}

export const DEFAULT_INTERVAL_OPTIONS: IntervalScoreOptions = { toleranceMs: 12 * 3_600_000, defaultIntervalMinutes: 15 };

/** Injections whose intervals no detector can be faulted for marking: they change what the meter reports. */
const EXCUSING = new Set(['outage', 'silent', 'registerReset', 'feederOverload', 'reverseFlow']);

export interface Prf {
  precision: number | null;
  recall: number | null;
  f1: number | null;
}

export interface MetricScore {
  /** Counts summed over meters. */
  labels: number;
  found: number;
  flags: number;
  trueFlags: number;
  pooled: Prf;
  mean: Prf;
}

export interface GroupScore {
  /** `all`, or a magnitude: labels of that group only, the other groups' injections excused. */
  group: 'all' | Magnitude;
  injections: number;
  labelledMeters: number;
  /** Meters with flags and no labels, and their flags (interval metric). */
  cleanMetersFlagged: number;
  cleanFlags: number;
  interval: MetricScore;
  tolerance: MetricScore;
}

export interface TypeIntervalRow {
  type: string;
  magnitude: Magnitude;
  injections: number;
  labels: number;
  intervalFound: number;
  intervalRecall: number | null;
  toleranceFound: number;
  toleranceRecall: number | null;
}

export interface MarkTypeRow {
  type: string;
  flags: number;
  intervalTrue: number;
  intervalPrecision: number | null;
  toleranceTrue: number;
  tolerancePrecision: number | null;
}

export interface IntervalReport {
  toleranceHours: number;
  groups: GroupScore[];
  types: TypeIntervalRow[];
  markTypes: MarkTypeRow[];
}

interface Label {
  start: number;
  end: number;
  record: TruthRecord;
}

interface Flag {
  start: number;
  end: number;
  type: string;
}

interface MeterData {
  labels: Label[];
  /** Spans of interval-scored injections, by record (for group excusal). */
  spans: Array<{ a: number; b: number; record: TruthRecord }>;
  excused: Array<[number, number]>;
  flags: Flag[];
  iv: number;
}

const spansOf = (t: TruthRecord): Array<[number, number]> => t.spans ?? [[t.startMs, t.endMs]];

/** Sorted ascending: index of the first element ≥ x. */
function lowerBound(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((xs[mid] ?? 0) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function anyWithin(sorted: readonly number[], x: number, r: number): boolean {
  const i = lowerBound(sorted, x - r);
  const v = sorted[i];
  return v !== undefined && v <= x + r;
}

function meterData(truth: readonly TruthRecord[], marks: readonly MarkInput[], opts: IntervalScoreOptions): Map<string, MeterData> {
  const byMeter = new Map<string, MeterData>();
  const get = (meterId: string, iv?: number): MeterData => {
    let d = byMeter.get(meterId);
    if (d === undefined) {
      d = { labels: [], spans: [], excused: [], flags: [], iv: opts.defaultIntervalMinutes * 60_000 };
      byMeter.set(meterId, d);
    }
    if (iv !== undefined) d.iv = iv;
    return d;
  };
  for (const t of truth) {
    if (t.kind !== 'anomaly') continue;
    if (INTERVAL_SCORED.has(t.type) && t.meterId !== undefined) {
      const d = get(t.meterId, t.intervalMinutes === undefined ? undefined : t.intervalMinutes * 60_000);
      for (const [a, b] of spansOf(t)) {
        d.spans.push({ a, b, record: t });
        for (let x = a; x < b; x += d.iv) d.labels.push({ start: x, end: Math.min(b, x + d.iv), record: t });
      }
    } else if (EXCUSING.has(t.type)) {
      for (const m of t.meters) get(m).excused.push([t.startMs, t.endMs]);
    }
  }
  for (const m of marks) {
    const d = get(m.meterId);
    d.flags.push({ start: m.start, end: m.end ?? m.start + d.iv, type: m.type });
  }
  for (const d of byMeter.values()) {
    d.labels.sort((x, y) => x.start - y.start);
    d.flags.sort((x, y) => x.start - y.start || x.type.localeCompare(y.type));
  }
  return byMeter;
}

interface MeterResult {
  labels: number;
  iFound: number;
  tFound: number;
  /** Flags deduplicated by start, per metric (the tolerance metric excuses more). */
  iFlags: number;
  iTrue: number;
  tFlags: number;
  tTrue: number;
}

/** Means over meters, as the module comment defines them. */
function means(results: readonly MeterResult[], pick: (r: MeterResult) => { labels: number; found: number; flags: number; trueFlags: number }): Prf {
  const ps: number[] = [];
  const rs: number[] = [];
  const fs: number[] = [];
  for (const res of results) {
    const c = pick(res);
    if (c.labels === 0) continue;
    const r = c.found / c.labels;
    rs.push(r);
    if (c.flags === 0) {
      fs.push(0);
      continue;
    }
    const p = c.trueFlags / c.flags;
    ps.push(p);
    fs.push(p + r === 0 ? 0 : (2 * p * r) / (p + r));
  }
  const avg = (xs: number[]) => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length);
  return { precision: avg(ps), recall: avg(rs), f1: avg(fs) };
}

function metric(results: readonly MeterResult[], pick: (r: MeterResult) => { labels: number; found: number; flags: number; trueFlags: number }): MetricScore {
  let labels = 0;
  let found = 0;
  let flags = 0;
  let trueFlags = 0;
  for (const res of results) {
    const c = pick(res);
    labels += c.labels;
    found += c.found;
    flags += c.flags;
    trueFlags += c.trueFlags;
  }
  const precision = ratio(trueFlags, flags);
  const recall = ratio(found, labels);
  return { labels, found, flags, trueFlags, pooled: { precision, recall, f1: f1(precision, recall) }, mean: means(results, pick) };
}

const inside = (x: number, spans: ReadonlyArray<readonly [number, number]>, pad: number) => spans.some(([a, b]) => x >= a - pad && x < b + pad);

/**
 * Scores marks against the truth: per group (all, clear, subtle, moderate), per injected type and magnitude, and
 * per mark type. Pure: the lead feeds it from ShardWork's `out.marks` or from InfluxDB's `interval` points.
 */
export function scoreIntervals(
  truth: readonly TruthRecord[],
  marks: readonly MarkInput[],
  opts: IntervalScoreOptions = DEFAULT_INTERVAL_OPTIONS,
): IntervalReport {
  const data = meterData(truth, marks, opts);
  const r = opts.toleranceMs;
  const groups: GroupScore[] = [];
  const typeRows = new Map<string, TypeIntervalRow>();
  const markRows = new Map<string, MarkTypeRow>();

  for (const group of ['all', 'clear', 'subtle', 'moderate'] as const) {
    const inGroup = (t: TruthRecord) => group === 'all' || t.magnitude === group;
    const injections = truth.filter((t) => t.kind === 'anomaly' && INTERVAL_SCORED.has(t.type) && t.meterId !== undefined && inGroup(t)).length;
    if (group !== 'all' && injections === 0) continue;
    const results: MeterResult[] = [];
    let cleanMetersFlagged = 0;
    let cleanFlags = 0;
    for (const d of data.values()) {
      const labels = d.labels.filter((l) => inGroup(l.record));
      const excused: Array<[number, number]> = [...d.excused, ...d.spans.filter((s) => !inGroup(s.record)).map((s): [number, number] => [s.a, s.b])];
      const labelStarts = labels.map((l) => l.start);
      // One flag per interval start, whatever detectors marked it.
      const iFlags: Flag[] = [];
      const tFlags: Flag[] = [];
      let prev = Number.NaN;
      for (const f of d.flags) {
        if (f.start === prev) continue;
        prev = f.start;
        if (!inside(f.start, excused, 0)) iFlags.push(f);
        if (!inside(f.start, excused, r)) tFlags.push(f);
      }
      const overlapsLabel = (f: Flag) => {
        const i = lowerBound(labelStarts, f.start);
        // The label starting at or after f.start, or the one before it (which may still cover f.start).
        const at = labels[i];
        const before = labels[i - 1];
        return (at !== undefined && at.start < f.end) || (before !== undefined && before.end > f.start);
      };
      const flagStarts = tFlags.map((f) => f.start);
      let iFound = 0;
      let tFound = 0;
      {
        // Labels covered by a flag: a sweep over both sorted lists.
        let j = 0;
        for (const l of labels) {
          while (j < iFlags.length && (iFlags[j]?.end ?? 0) <= l.start) j++;
          let covered = false;
          for (let k = j; k < iFlags.length && (iFlags[k]?.start ?? Infinity) <= l.start; k++) {
            if ((iFlags[k]?.end ?? 0) > l.start) covered = true;
          }
          if (covered) iFound++;
          const tf = anyWithin(flagStarts, l.start, r);
          if (tf) tFound++;
          if (group === 'all') {
            const key = `${l.record.type}/${l.record.magnitude}`;
            const row = typeRows.get(key) ?? {
              type: l.record.type,
              magnitude: l.record.magnitude,
              injections: 0,
              labels: 0,
              intervalFound: 0,
              intervalRecall: null,
              toleranceFound: 0,
              toleranceRecall: null,
            };
            row.labels++;
            if (covered) row.intervalFound++;
            if (tf) row.toleranceFound++;
            typeRows.set(key, row);
          }
        }
      }
      let iTrue = 0;
      for (const f of iFlags) if (overlapsLabel(f)) iTrue++;
      let tTrue = 0;
      for (const f of tFlags) if (anyWithin(labelStarts, f.start, r)) tTrue++;
      if (group === 'all') {
        // Per mark type: every mark (not deduplicated across types), excused ones left out.
        for (const f of d.flags) {
          const row = markRows.get(f.type) ?? { type: f.type, flags: 0, intervalTrue: 0, intervalPrecision: null, toleranceTrue: 0, tolerancePrecision: null };
          if (!inside(f.start, excused, 0)) {
            row.flags++;
            if (overlapsLabel(f)) row.intervalTrue++;
            if (anyWithin(labelStarts, f.start, r)) row.toleranceTrue++;
          }
          markRows.set(f.type, row);
        }
      }
      if (labels.length === 0 && iFlags.length === 0 && tFlags.length === 0) continue;
      if (labels.length === 0 && iFlags.length > 0) {
        cleanMetersFlagged++;
        cleanFlags += iFlags.length;
      }
      results.push({ labels: labels.length, iFound, tFound, iFlags: iFlags.length, iTrue, tFlags: tFlags.length, tTrue });
    }
    groups.push({
      group,
      injections,
      labelledMeters: results.filter((x) => x.labels > 0).length,
      cleanMetersFlagged,
      cleanFlags,
      interval: metric(results, (x) => ({ labels: x.labels, found: x.iFound, flags: x.iFlags, trueFlags: x.iTrue })),
      tolerance: metric(results, (x) => ({ labels: x.labels, found: x.tFound, flags: x.tFlags, trueFlags: x.tTrue })),
    });
  }

  for (const t of truth) {
    if (t.kind !== 'anomaly' || !INTERVAL_SCORED.has(t.type) || t.meterId === undefined) continue;
    const key = `${t.type}/${t.magnitude}`;
    const row = typeRows.get(key);
    if (row) row.injections++;
  }
  const types = [...typeRows.values()]
    .map((row) => ({ ...row, intervalRecall: ratio(row.intervalFound, row.labels), toleranceRecall: ratio(row.toleranceFound, row.labels) }))
    .sort((x, y) => x.type.localeCompare(y.type) || x.magnitude.localeCompare(y.magnitude));
  const markTypes = [...markRows.values()]
    .map((row) => ({ ...row, intervalPrecision: ratio(row.intervalTrue, row.flags), tolerancePrecision: ratio(row.toleranceTrue, row.flags) }))
    .sort((x, y) => x.type.localeCompare(y.type));
  return { toleranceHours: r / 3_600_000, groups, types, markTypes };
}

const fmt = (x: number | null): string => (x === null ? '-' : x.toFixed(2));

function table(lines: string[][]): string[] {
  const widths = (lines[0] ?? []).map((_, i) => Math.max(...lines.map((l) => (l[i] ?? '').length)));
  return lines.map((l) =>
    l
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd(),
  );
}

/** The report as plain-text tables: groups, injected types, mark types. */
export function formatIntervalReport(rep: IntervalReport): string {
  const g: string[][] = [
    [
      'group',
      'injections',
      'meters',
      'labels',
      'flags',
      'int P',
      'int R',
      'int F1',
      'int mean P',
      'mean R',
      'mean F1',
      'tol P',
      'tol R',
      'tol F1',
      'tol mean P',
      'mean R',
      'mean F1',
      'clean meters flagged (flags)',
    ],
  ];
  for (const x of rep.groups) {
    const i = x.interval;
    const t = x.tolerance;
    g.push([
      x.group,
      String(x.injections),
      String(x.labelledMeters),
      String(i.labels),
      String(i.flags),
      fmt(i.pooled.precision),
      fmt(i.pooled.recall),
      fmt(i.pooled.f1),
      fmt(i.mean.precision),
      fmt(i.mean.recall),
      fmt(i.mean.f1),
      fmt(t.pooled.precision),
      fmt(t.pooled.recall),
      fmt(t.pooled.f1),
      fmt(t.mean.precision),
      fmt(t.mean.recall),
      fmt(t.mean.f1),
      `${x.cleanMetersFlagged} (${x.cleanFlags})`,
    ]);
  }
  const ty: string[][] = [['type', 'magnitude', 'injections', 'labels', 'int found', 'int recall', 'tol found', 'tol recall']];
  for (const x of rep.types) {
    ty.push([
      x.type,
      x.magnitude,
      String(x.injections),
      String(x.labels),
      String(x.intervalFound),
      fmt(x.intervalRecall),
      String(x.toleranceFound),
      fmt(x.toleranceRecall),
    ]);
  }
  const mk: string[][] = [['mark type', 'flags', 'int true', 'int precision', 'tol true', 'tol precision']];
  for (const x of rep.markTypes)
    mk.push([x.type, String(x.flags), String(x.intervalTrue), fmt(x.intervalPrecision), String(x.toleranceTrue), fmt(x.tolerancePrecision)]);
  return [
    `intervals (int: interval by interval; tol: within ${rep.toleranceHours} h; pooled, then mean over labelled meters)`,
    ...table(g),
    '',
    'labelled intervals by injected type',
    ...table(ty),
    '',
    'flags by mark type',
    ...table(mk),
  ].join('\n');
}
