import type { DetectionEvent, IntervalMark } from '../contracts/events.js';
import type { MeterEvent } from '../contracts/reading.js';
import { meterEvent } from '../domain/detection-events.js';
import {
  checkSilent,
  closedDays,
  type IntervalOut,
  type MeterInfo,
  type MeterState,
  processExchange,
  processRead,
  silentDeadline,
} from '../domain/meter-state.js';
import type { StreamSettings } from '../domain/stream-settings.js';
import { addSample, advanceCommon, type CommonLevel, commonFactor, newCommonLevel } from '../domain/common-level.js';
import { aggregationSlots, netDemandW } from '../domain/peaks.js';
import { escTag, lp } from '../shared/line-protocol.js';
import { DeadlineHeap } from './deadline-heap.js';
import type { StreamEntry } from './entries.js';

/**
 * One shard's in-memory state and the processing of a batch of its entries, in stream order.
 * No I/O here: the output lists what to write, enqueue and checkpoint; main.ts does it.
 */

export interface MeterRecord extends MeterInfo {
  tariff: string;
}

export interface WorkSettings {
  settings: StreamSettings;
  watermarkLatenessMs: number;
  maxFutureMs: number;
  /** Aggregation interval of transformer/fleet load. */
  aggMs: number;
  /** Time-of-use band of the meter's tariff at an instant (interval tag). */
  band(meter: MeterRecord, tsMs: number): string;
  /**
   * The zone billing cuts the meter's days in (its tariff's): a late interval recomputes its day once that day has
   * ended there, named there (the process zone's day can end up to a day later: billing would keep a stale read).
   */
  dayZone(meter: MeterRecord): string;
}

export interface DeadLetterOut {
  reason: 'late' | 'future' | 'malformed';
  meterId?: string;
  payload: string;
}

export interface LoadContribution {
  transformerId: string;
  feederId: string;
  slot: number;
  field: string;
  netW: number;
}

export interface Recompute {
  meterId: string;
  day: string;
  /**
   * The stream entry whose data changed the closed day: part of the job id, so a replay of the same entry does not
   * enqueue it twice, while the next late batch for the same day (same watermark) is a job of its own.
   */
  entryId: string;
}

export interface BatchCounts {
  readings: number;
  accepted: number;
  duplicates: number;
  conflicts: number;
  late: number;
  future: number;
  malformed: number;
  intervals: number;
  meterEvents: number;
  /** Meter exchange work orders recorded (a subset of meterEvents). */
  exchanges: number;
}

export interface BatchOutput {
  lines: string[];
  /** Deduplicated by id, in first-seen order. */
  events: DetectionEvent[];
  recomputes: Recompute[];
  /** Intervals judged anomalous in this batch (their lines are in `lines` too). */
  marks: IntervalMark[];
  load: LoadContribution[];
  deadLetters: DeadLetterOut[];
  dirty: Set<string>;
  ackIds: string[];
  counts: BatchCounts;
}

/** Adds b into a. */
export function addCounts(a: BatchCounts, b: BatchCounts): void {
  a.readings += b.readings;
  a.accepted += b.accepted;
  a.duplicates += b.duplicates;
  a.conflicts += b.conflicts;
  a.late += b.late;
  a.future += b.future;
  a.malformed += b.malformed;
  a.intervals += b.intervals;
  a.meterEvents += b.meterEvents;
  a.exchanges += b.exchanges;
}

export function emptyCounts(): BatchCounts {
  return { readings: 0, accepted: 0, duplicates: 0, conflicts: 0, late: 0, future: 0, malformed: 0, intervals: 0, meterEvents: 0, exchanges: 0 };
}

/** Meter events forwarded as detection events; the rest are counted only. */
const FORWARDED: Partial<Record<MeterEvent['event'], { type: 'lastGasp' | 'powerRestored' | 'tamper'; severity: DetectionEvent['severity']; reason: string }>> =
  {
    lastGasp: { type: 'lastGasp', severity: 'major', reason: 'meter reported a last gasp (supply lost)' },
    powerRestored: { type: 'powerRestored', severity: 'info', reason: 'meter reported power restored' },
    tamper: { type: 'tamper', severity: 'major', reason: 'meter reported tampering' },
    coverOpen: { type: 'tamper', severity: 'major', reason: 'meter cover opened' },
  };

/**
 * Escaped `class,feeder,meter,transformer` tags of a meter's `interval` series after `band`, cached per registry
 * record (the interval line is the hot path, one per reading; a registry edit is a new record, so new tags).
 */
const tagCache = new WeakMap<MeterRecord, string>();

function meterTags(meter: MeterRecord): string {
  let tags = tagCache.get(meter);
  if (tags === undefined) {
    tags = `,class=${escTag(meter.class)},feeder=${escTag(meter.feederId)},meter=${escTag(meter.meterId)},transformer=${escTag(meter.transformerId)}`;
    tagCache.set(meter, tags);
  }
  return tags;
}

/** Same line as lp('interval', …) with its tags in sorted order, built without sorting or re-escaping per point. */
export function intervalLine(meter: MeterRecord, band: string, iv: IntervalOut): string {
  const demand = Number.isFinite(iv.demandW) ? `,demand_w=${iv.demandW}` : '';
  return `interval,band=${escTag(band)}${meterTags(meter)} wh=${iv.wh}i,export_wh=${iv.exportWh}i${demand},register_wh=${iv.registerWh}i,estimated=${iv.estimated} ${iv.start}`;
}

const num = (n: number): string => String(Number.isFinite(n) ? Math.round(n * 1000) / 1000 : 0);

/**
 * An anomalous interval as fields on the meter's `interval` point (same series and time: InfluxDB merges them into
 * the point): `anomaly` (type), `anomaly_score`, `expected_wh`.
 */
export function markLine(meter: MeterRecord, band: string, m: IntervalMark): string {
  return `interval,band=${escTag(band)}${meterTags(meter)} anomaly="${m.type}",anomaly_score=${num(m.score)},expected_wh=${num(m.expectedWh)} ${m.start}`;
}

export function anomalyLine(e: DetectionEvent): string {
  return lp(
    'anomaly',
    { meter: e.subject, type: e.type, severity: e.severity },
    {
      value: e.value,
      expected: e.expected,
      score: e.score,
      status: e.status,
      reason: e.reason,
    },
    e.ts,
  );
}

export class ShardWork {
  readonly states = new Map<string, MeterState>();
  watermark = 0;
  /** What the shard's meters do together right now (weather): in memory only, relearnt within hours after a restart. */
  readonly common: CommonLevel = newCommonLevel();
  private heap = new DeadlineHeap();

  constructor(
    readonly shard: number,
    private readonly w: WorkSettings,
  ) {}

  /** Replaces the in-memory state with a checkpoint (start, or recovery after a failed batch). */
  load(states: Map<string, MeterState>, watermark: number): void {
    this.states.clear();
    this.heap = new DeadlineHeap();
    for (const [id, st] of states) {
      this.states.set(id, st);
      const dl = silentDeadline(st, this.w.settings);
      if (dl !== undefined && !st.det.silent) this.heap.push(dl, id);
    }
    this.watermark = watermark;
  }

  /**
   * Every meter the batch may need registry facts for: its readers, and the meters the batch's watermark
   * may make silent (their events carry customer and transformer too).
   */
  metersNeeded(entries: readonly StreamEntry[]): string[] {
    const ids = new Set<string>();
    let maxTs = -Infinity;
    for (const e of entries) {
      for (const r of e.readings) {
        ids.add(r.meterId);
        if (r.ts <= e.rx + this.w.maxFutureMs) maxTs = Math.max(maxTs, r.ts);
      }
      for (const ev of e.events) ids.add(ev.meterId);
    }
    const bound = Math.max(this.watermark, maxTs - this.w.watermarkLatenessMs);
    for (const id of this.heap.dueBy(bound)) ids.add(id);
    return [...ids];
  }

  process(entries: readonly StreamEntry[], meterOf: (meterId: string) => MeterRecord): BatchOutput {
    const out: BatchOutput = {
      lines: [],
      events: [],
      recomputes: [],
      marks: [],
      load: [],
      deadLetters: [],
      dirty: new Set(),
      ackIds: [],
      counts: emptyCounts(),
    };
    const seen = new Set<string>();
    const recomputeSeen = new Set<string>();
    const emit = (evs: readonly DetectionEvent[]): void => {
      for (const e of evs) {
        out.lines.push(anomalyLine(e));
        if (seen.has(e.id)) continue;
        seen.add(e.id);
        out.events.push(e);
      }
    };
    const s = this.w.settings;

    for (const entry of entries) {
      const wmBefore = this.watermark;
      let maxTs = -Infinity;
      for (const bad of entry.malformed) {
        out.counts.malformed++;
        out.deadLetters.push({ reason: 'malformed', payload: bad });
      }
      for (const r of entry.readings) {
        out.counts.readings++;
        if (r.ts > entry.rx + this.w.maxFutureMs) {
          out.counts.future++;
          out.deadLetters.push({ reason: 'future', meterId: r.meterId, payload: JSON.stringify(r) });
          continue;
        }
        maxTs = Math.max(maxTs, r.ts);
        const meter = meterOf(r.meterId);
        const prev = this.states.get(r.meterId);
        const res = processRead(prev, r, meter, s, commonFactor(this.common));
        if (res.outcome === 'duplicate') out.counts.duplicates++;
        else if (res.outcome === 'conflict') out.counts.conflicts++;
        else if (res.outcome === 'late') {
          out.counts.late++;
          out.deadLetters.push({ reason: 'late', meterId: r.meterId, payload: JSON.stringify(r) });
        }
        if (res.outcome !== 'accepted') continue;
        out.counts.accepted++;
        this.states.set(r.meterId, res.state);
        out.dirty.add(r.meterId);
        // A first read (the state may hold only an exchange work order), a silent meter back, or a new grid: a new deadline.
        if (prev === undefined || prev.vee.reads.length === 0 || prev.det.silent || prev.vee.intervalMs !== res.state.vee.intervalMs) {
          const dl = silentDeadline(res.state, s);
          if (dl !== undefined) this.heap.push(dl, r.meterId);
        }
        this.emitIntervals(meter, res.state.vee.intervalMs, res.intervals, wmBefore, entry.id, out, recomputeSeen);
        for (const m of res.marks) {
          out.marks.push(m);
          out.lines.push(markLine(meter, this.w.band(meter, m.start), m));
        }
        for (const b of res.baselinePoints) {
          out.lines.push(lp('baseline', { meter: meter.meterId }, { expected_wh: b.expectedWh, spread_wh: b.spreadWh }, b.ts));
        }
        emit(res.events);
        for (let k = 0; k + 2 < res.ratios.length; k += 3) addSample(this.common, res.ratios[k] ?? 0, res.ratios[k + 1] ?? 0, res.ratios[k + 2] ?? 0);
      }
      for (const ev of entry.events) {
        out.counts.meterEvents++;
        if (ev.event === 'meterExchange') {
          // Corrects the decrease it explains if that was already computed (late data path), else waits for it.
          out.counts.exchanges++;
          const meter = meterOf(ev.meterId);
          const res = processExchange(this.states.get(ev.meterId), ev, meter, s);
          this.states.set(ev.meterId, res.state);
          out.dirty.add(ev.meterId);
          this.emitIntervals(meter, res.state.vee.intervalMs, res.intervals, wmBefore, entry.id, out, recomputeSeen);
          continue;
        }
        const fwd = FORWARDED[ev.event];
        if (fwd === undefined) continue;
        emit([meterEvent(meterOf(ev.meterId), fwd.type, 'firing', ev.ts, { value: 1, expected: 0, score: 1, severity: fwd.severity, reason: fwd.reason })]);
      }
      if (maxTs > -Infinity) this.watermark = Math.max(this.watermark, maxTs - this.w.watermarkLatenessMs);
      advanceCommon(this.common, this.watermark, s.common);
      this.sweepSilent(meterOf, out, emit);
      out.ackIds.push(entry.id);
    }
    return out;
  }

  /**
   * New or recomputed intervals: their points (an overwrite for a recomputed one), their load contribution
   * (keyed per meter and interval, so also overwritten), and a billing recompute for each day already closed.
   */
  private emitIntervals(
    meter: MeterRecord,
    intervalMs: number,
    intervals: readonly IntervalOut[],
    wmBefore: number,
    entryId: string,
    out: BatchOutput,
    recomputeSeen: Set<string>,
  ): void {
    const share = Math.min(1, intervalMs / this.w.aggMs);
    for (const iv of intervals) {
      out.counts.intervals++;
      out.lines.push(intervalLine(meter, this.w.band(meter, iv.start), iv));
      const netW = netDemandW(iv.wh, iv.exportWh, intervalMs);
      for (const slot of aggregationSlots(iv.start, iv.end, this.w.aggMs)) {
        out.load.push({ transformerId: meter.transformerId, feederId: meter.feederId, slot, field: `${meter.meterId}@${iv.start}`, netW: netW * share });
      }
    }
    for (const day of closedDays(intervals, wmBefore, this.w.dayZone(meter))) {
      const key = `${meter.meterId}|${day}`;
      if (recomputeSeen.has(key)) continue;
      recomputeSeen.add(key);
      out.recomputes.push({ meterId: meter.meterId, day, entryId });
    }
  }

  /** Fires `silent` for every meter whose deadline the watermark has passed. */
  private sweepSilent(meterOf: (meterId: string) => MeterRecord, out: BatchOutput, emit: (evs: readonly DetectionEvent[]) => void): void {
    const s = this.w.settings;
    for (let top = this.heap.peek(); top !== undefined && top <= this.watermark; top = this.heap.peek()) {
      const item = this.heap.pop();
      if (item === undefined) break;
      const st = this.states.get(item.meterId);
      if (st === undefined || st.det.silent) continue;
      const dl = silentDeadline(st, s);
      if (dl === undefined) continue;
      if (dl > this.watermark) {
        this.heap.push(dl, item.meterId);
        continue;
      }
      const r = checkSilent(st, this.watermark, meterOf(item.meterId), s);
      this.states.set(item.meterId, r.state);
      out.dirty.add(item.meterId);
      emit(r.events);
    }
  }
}
