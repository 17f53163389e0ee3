import { DateTime } from 'luxon';
import { planDemandResponse, type DrPlanEvent } from './demand-response.js';
import type { Fleet, MeterModel, TransformerGroup } from './fleet.js';
import { MALFORMED_REASON } from './malformed.js';
import { calendarAt, expectedLoadW, type CalendarPoint } from './profiles.js';
import { Rng } from './prng.js';
import { ALIGN_MS, ScenarioError, type MalformedVariant, type Range, type ResolvedScenario } from './scenario.js';
import { isoSeconds, parseDuration } from './time-spec.js';
import { EXPECTED_ALSO, TRUTH_ANOMALIES, type Magnitude, type TruthRecord } from './truth.js';

/**
 * Where and when each anomaly and transport fault goes, decided before the first message from the scenario's seed.
 * Each meter carries at most one anomaly, and transformer-level injections (outage, overload, late batch) keep their
 * meters to themselves, so every detection can be told apart in the truth.
 */

interface Base {
  id: string;
  magnitude: Magnitude;
  /** Event time window, ms: the first affected interval starts at startMs, the last ends at endMs. */
  startMs: number;
  endMs: number;
}

export type Injection =
  | (Base & { type: 'spike'; meter: number; powerW: number; expectedW: number; factor: number; floorW: number })
  | (Base & { type: 'drop'; meter: number; bypass: number })
  | (Base & { type: 'flatline'; meter: number })
  | (Base & { type: 'reverseFlow'; meter: number; fraction: number })
  | (Base & { type: 'voltage'; meter: number; variant: 'sag' | 'swell'; level: number })
  | (Base & { type: 'silent'; meter: number })
  | (Base & { type: 'outage'; group: number; lastGasp: Array<{ meter: number; ts: number }>; restored: Array<{ meter: number; ts: number }> })
  | (Base & { type: 'customerPeak'; meter: number; powerW: number; factor: number })
  | (Base & { type: 'feederOverload'; group: number; targetW: number; factor: number })
  | (Base & { type: 'registerReset'; meter: number; newStartWh: number })
  | (Base & { type: 'highUsage'; meter: number; variant: HighUsageVariant; factor: number; spans: Array<[number, number]> })
  | (Base & { type: 'levelShift'; meter: number; factor: number; effectEndMs: number })
  | (Base & { type: 'stuck'; meter: number; wh: number })
  | (Base & { type: 'placeholder'; meter: number; wh: number; whPerHour: number })
  | (Base & { type: 'lowDay'; meter: number; share: number })
  | (Base & { type: 'shape'; meter: number; shiftH: number })
  | (Base & { type: 'duplicate'; meter: number; variant: 'single' | 'batch'; delayIntervals: number })
  | (Base & { type: 'outOfOrder'; meter: number; delayIntervals: number })
  | (Base & { type: 'lateBatch'; group: number })
  | (Base & { type: 'malformed'; meter: number; variant: MalformedVariant; otherMeter: number })
  | (Base & { type: 'clockSkew'; meter: number; skewMs: number });

/** Meter-level injections with `clear` and `subtle` ranges. */
type ClearType = 'spike' | 'drop' | 'flatline' | 'reverseFlow' | 'voltage' | 'silent' | 'customerPeak' | 'registerReset';

export type HighUsageVariant = 'allDay' | 'nights' | 'nightShift';

/** Local hours a highUsage variant touches: HVAC left on at night and over weekends and holidays, or a night shift. */
export function highUsageHour(variant: HighUsageVariant, hour: number, weekday: number, holiday: boolean): boolean {
  if (variant === 'nights') return hour < 7 || hour >= 20 || weekday >= 6 || holiday;
  if (variant === 'nightShift') return hour < 6 || hour >= 22;
  return true;
}

export interface Plan {
  injections: Injection[];
  truth: TruthRecord[];
  /** Demand-response events, their participants and responders (empty without `demandResponse`). */
  dr: DrPlanEvent[];
}

const HOUR = 3_600_000;

function draw(rng: Rng, [lo, hi]: Range): number {
  return lo === hi ? lo : rng.range(lo, hi);
}

class Planner {
  private readonly rng: Rng;
  private readonly usedMeters = new Set<number>();
  private readonly usedGroups = new Set<number>();
  private readonly usedKeys = new Set<string>();
  readonly injections: Injection[] = [];
  private serial = 0;
  private readonly holidays: ReadonlySet<number>;

  constructor(
    private readonly fleet: Fleet,
    private readonly s: ResolvedScenario,
  ) {
    this.rng = new Rng(s.seed, 'plan');
    this.holidays = holidayKeys(s.calendar.holidays);
  }

  /** Local calendar at `ms`, with holidays. */
  private cal(ms: number): CalendarPoint & { holiday: boolean } {
    const c = calendarAt(ms, this.s.timezone);
    return { ...c, holiday: this.holidays.has(c.dayKey) };
  }

  /**
   * A local midnight in the window starting `days` whole local days that fit before its end; with `workingDay`, a
   * Monday–Friday that is not a holiday. [start, end] in ms.
   */
  private localDays(what: string, win: [number, number], days: number, workingDay: boolean): [number, number] {
    const zone = this.s.timezone;
    const first = DateTime.fromMillis(win[0], { zone }).startOf('day').plus({ days: 1 });
    const span = Math.floor((win[1] - first.toMillis()) / 86_400_000) - days;
    if (span < 0) throw new ScenarioError(`${what}: ${days} whole days do not fit in the window; widen it`);
    for (let attempt = 0; attempt < 60; attempt++) {
      const day = first.plus({ days: this.rng.int(0, span) });
      const start = day.toMillis();
      const end = day.plus({ days }).toMillis();
      if (end > win[1]) continue;
      if (!workingDay) return [start, end];
      const c = this.cal(start + 3_600_000);
      if (c.weekday <= 5 && !c.holiday) return [start, end];
    }
    throw new ScenarioError(`${what}: no working day found in the window`);
  }

  private nextId(type: string): string {
    this.serial++;
    return `${type}-${String(this.serial).padStart(4, '0')}`;
  }

  /** [lo, hi] in ms for a type, from its own window or the scenario's. */
  window(w: { start: string; end: string } | undefined): [number, number] {
    const win = w ?? this.s.anomalies.window;
    const lo = this.s.fromMs + parseDuration(win.start);
    const hi = win.end.startsWith('+') ? this.s.fromMs + parseDuration(win.end.slice(1)) : this.s.toMs - parseDuration(win.end);
    return [lo, Math.min(hi, this.s.toMs)];
  }

  /** A start in [lo, hi - duration], aligned to `align`. */
  start(what: string, [lo, hi]: [number, number], durationMs: number, align: number): number {
    const earliest = Math.ceil(lo / align) * align;
    const latest = Math.floor((hi - durationMs) / align) * align;
    if (latest < earliest) {
      throw new ScenarioError(
        `${what}: an injection of ${(durationMs / HOUR).toFixed(2)} h does not fit between ${isoSeconds(lo)} and ${isoSeconds(hi)}; widen the window or the date range`,
      );
    }
    return earliest + align * this.rng.int(0, Math.round((latest - earliest) / align));
  }

  magnitudes(count: number, subtleShare: number): Array<'clear' | 'subtle'> {
    const subtle = Math.round(count * subtleShare);
    return Array.from({ length: count }, (_, i) => (i >= count - subtle ? 'subtle' : 'clear'));
  }

  takeMeter(what: string, eligible: (m: MeterModel) => boolean): MeterModel {
    const pool = this.fleet.meters.filter((m) => !this.usedMeters.has(m.index) && eligible(m));
    if (pool.length === 0) throw new ScenarioError(`${what}: no eligible meter left; add meters or lower the counts`);
    const m = this.rng.pick(pool);
    this.usedMeters.add(m.index);
    return m;
  }

  takeGroup(what: string, eligible: (g: TransformerGroup) => boolean): number {
    const pool = this.fleet.groups.flatMap((g, i) => (!this.usedGroups.has(i) && eligible(g) ? [i] : []));
    if (pool.length === 0) throw new ScenarioError(`${what}: no eligible transformer left; add meters or lower the counts`);
    const gi = this.rng.pick(pool);
    this.usedGroups.add(gi);
    for (const m of this.fleet.groups[gi]?.meters ?? []) this.usedMeters.add(m.index);
    return gi;
  }

  /** A reading time of meter `m` not yet used by another fault, leaving `tailIntervals` before the window's end. */
  readingTime(what: string, m: MeterModel, [lo, hi]: [number, number], tailIntervals: number): number {
    const iv = m.intervalMinutes * 60_000;
    for (let attempt = 0; attempt < 100; attempt++) {
      const ts = this.start(what, [Math.max(lo, this.s.fromMs + iv), hi], tailIntervals * iv, iv);
      const key = `${m.index}:${ts}`;
      if (!this.usedKeys.has(key)) {
        this.usedKeys.add(key);
        return ts;
      }
    }
    throw new ScenarioError(`${what}: too many faults for the readings available`);
  }

  add(inj: Injection): void {
    this.injections.push(inj);
  }

  plan(): void {
    const a = this.s.anomalies;
    const t = this.s.transport;
    const street = (g: TransformerGroup) => g.meters.some((m) => m.class === 'residential' || m.class === 'commercial');
    const noPv = (m: MeterModel) => !m.hasPv;
    const smallCustomer = (m: MeterModel) => !m.hasPv && (m.class === 'residential' || m.class === 'commercial');

    // Transformer-level first: they claim whole groups of meters.
    {
      const c = a.outage;
      const win = this.window(c.window);
      for (const magnitude of this.magnitudes(c.count, c.subtleShare)) {
        const p = c[magnitude];
        const group = this.takeGroup('anomalies.outage', (g) => street(g) && g.meters.length >= 2);
        const members = this.fleet.groups[group]?.meters ?? [];
        const dur = Math.max(1, Math.round((draw(this.rng, p.hours) * HOUR) / (15 * 60_000))) * 15 * 60_000;
        const startMs = this.start('anomalies.outage', win, dur, ALIGN_MS);
        const endMs = startMs + dur;
        const gasping = Math.max(1, Math.round(draw(this.rng, p.lastGaspShare) * members.length));
        const gaspSet = new Set(this.rng.shuffle(members.map((m) => m.index)).slice(0, gasping));
        const lastGasp = members.filter((m) => gaspSet.has(m.index)).map((m) => ({ meter: m.index, ts: startMs + this.rng.int(1, 30) * 1000 }));
        const restored = members.map((m) => ({ meter: m.index, ts: endMs + this.rng.int(1, 60) * 1000 }));
        this.add({ type: 'outage', id: this.nextId('outage'), magnitude, startMs, endMs, group, lastGasp, restored });
      }
    }
    {
      const c = a.feederOverload;
      const win = this.window(c.window);
      for (const magnitude of this.magnitudes(c.count, c.subtleShare)) {
        const p = c[magnitude];
        // A coincident residential evening peak needs a street transformer with a few households on it.
        const group = this.takeGroup(
          'anomalies.feederOverload',
          (g) => g.meters.length >= 5 && g.meters.filter((m) => m.class === 'residential').length * 2 >= g.meters.length,
        );
        const g = this.fleet.groups[group];
        const hours = Math.max(1, Math.round(draw(this.rng, p.hours)));
        const startMs = this.eveningStart(win, hours * HOUR, c.startLocalHour);
        const factor = draw(this.rng, p.factor);
        this.add({
          type: 'feederOverload',
          id: this.nextId('feederOverload'),
          magnitude,
          startMs,
          endMs: startMs + hours * HOUR,
          group,
          factor,
          targetW: (g?.transformer.ratingKva ?? 0) * 1000 * factor,
        });
      }
    }
    {
      const c = t.lateBatches;
      const win = this.window(c.window);
      for (let i = 0; i < c.count; i++) {
        const group = this.takeGroup('transport.lateBatches', () => true);
        const hours = Math.max(1, Math.round(draw(this.rng, c.hours)));
        const startMs = this.start('transport.lateBatches', win, hours * HOUR, ALIGN_MS);
        this.add({ type: 'lateBatch', id: this.nextId('lateBatch'), magnitude: 'clear', startMs, endMs: startMs + hours * HOUR, group });
      }
    }

    this.meterAnomaly('spike', smallCustomer, this.mags('spike'), (m, magnitude, win) => {
      const c = a.spike;
      const p = c[magnitude];
      const iv = m.intervalMinutes * 60_000;
      const n = Math.max(1, Math.round(draw(this.rng, p.intervals)));
      const factor = draw(this.rng, p.factor);
      const floorW = draw(this.rng, p.floorW);
      const capW = m.contractKw * 1000 * c.contractCap;
      // Prefer a time where the spike fits under the contract cap at the full factor (so it is not also a customer peak).
      let best: { startMs: number; expectedW: number; powerW: number } | undefined;
      for (let attempt = 0; attempt < 40; attempt++) {
        const startMs = this.start('anomalies.spike', win, n * iv, iv);
        let expectedW = 0;
        for (let k = 0; k < n * (iv / 900_000); k++) {
          expectedW = Math.max(expectedW, expectedLoadW(m, calendarAt(startMs + k * 900_000 + 450_000, this.s.timezone), this.s.profile.seasonal));
        }
        const powerW = Math.min(Math.max(expectedW * factor, expectedW + floorW), capW);
        if (best === undefined || powerW / expectedW > best.powerW / best.expectedW) best = { startMs, expectedW, powerW };
        if (powerW >= expectedW * factor) break;
      }
      if (best === undefined) throw new ScenarioError('anomalies.spike: no start time found');
      return { startMs: best.startMs, endMs: best.startMs + n * iv, extra: { powerW: best.powerW, expectedW: best.expectedW, factor, floorW } };
    });
    {
      // Clear, then moderate (a building half shut: any non-PV customer), then subtle.
      const c = a.drop;
      const moderate = Math.round(c.count * c.moderateShare);
      const list: Magnitude[] = this.magnitudes(c.count - moderate, c.subtleShare);
      list.splice(list.filter((x) => x === 'clear').length, 0, ...Array<Magnitude>(moderate).fill('moderate'));
      this.meterAnomaly(
        'drop',
        (m, magnitude) => (magnitude === 'moderate' ? noPv(m) : smallCustomer(m)),
        list,
        (m, magnitude, win) => {
          const p = c[magnitude];
          return this.span(m, win, 'anomalies.drop', draw(this.rng, p.hours), { bypass: draw(this.rng, p.bypass) });
        },
      );
    }
    // A stuck register only shows where the meter would have moved: skip the quietest customers.
    this.meterAnomaly(
      'flatline',
      (m) => noPv(m) && m.meanW >= 300,
      this.mags('flatline'),
      (m, magnitude, win) => {
        const p = a.flatline[magnitude];
        return this.span(m, win, 'anomalies.flatline', draw(this.rng, p.hours), {});
      },
    );
    this.meterAnomaly('reverseFlow', noPv, this.mags('reverseFlow'), (m, magnitude, win) => {
      const p = a.reverseFlow[magnitude];
      return this.span(m, win, 'anomalies.reverseFlow', draw(this.rng, p.hours), { fraction: draw(this.rng, p.fraction) });
    });
    this.meterAnomaly(
      'voltage',
      () => true,
      this.mags('voltage'),
      (m, magnitude, win) => {
        const c = a.voltage;
        const p = c[magnitude];
        const variant = this.rng.chance(c.swellShare) ? 'swell' : 'sag';
        return this.spanIntervals(m, win, 'anomalies.voltage', draw(this.rng, p.intervals), { variant, level: draw(this.rng, p[variant]) });
      },
    );
    this.meterAnomaly(
      'silent',
      () => true,
      this.mags('silent'),
      (m, magnitude, win) => {
        const p = a.silent[magnitude];
        return this.spanIntervals(m, win, 'anomalies.silent', draw(this.rng, p.intervals), {});
      },
    );
    this.meterAnomaly('customerPeak', noPv, this.mags('customerPeak'), (m, magnitude, win) => {
      const p = a.customerPeak[magnitude];
      const iv = m.intervalMinutes * 60_000;
      const n = Math.max(1, Math.round(draw(this.rng, p.intervals)));
      const factor = draw(this.rng, p.factor);
      const startMs = this.start('anomalies.customerPeak', win, n * iv, iv);
      return { startMs, endMs: startMs + n * iv, extra: { factor, powerW: m.contractKw * 1000 * factor } };
    });
    this.meterAnomaly(
      'registerReset',
      () => true,
      this.mags('registerReset'),
      (m, magnitude, win) => {
        const iv = m.intervalMinutes * 60_000;
        const startMs = this.start('anomalies.registerReset', win, iv, iv);
        return { startMs, endMs: startMs + iv, extra: { newStartWh: Math.round(draw(this.rng, a.registerReset[magnitude].newStartWh)) } };
      },
    );

    this.moderateAnomalies(noPv);

    // Transport faults on meters without anomalies.
    {
      const win = this.window(undefined);
      for (let i = 0; i < t.clockSkew.count; i++) {
        const m = this.takeMeter('transport.clockSkew', () => true);
        const sign = this.rng.chance(0.5) ? 1 : -1;
        const skewMs = sign * Math.round(draw(this.rng, t.clockSkew.seconds)) * 1000;
        const span = this.span(m, win, 'transport.clockSkew', draw(this.rng, t.clockSkew.hours), {});
        this.add({ type: 'clockSkew', id: this.nextId('clockSkew'), magnitude: 'clear', meter: m.index, startMs: span.startMs, endMs: span.endMs, skewMs });
      }
    }
    const clean = this.fleet.meters.filter((m) => !this.usedMeters.has(m.index));
    const whole: [number, number] = [this.s.fromMs, this.s.toMs];
    const cleanPick = (what: string) => {
      if (clean.length === 0) throw new ScenarioError(`${what}: no meter is free of anomalies; add meters or lower the counts`);
      return this.rng.pick(clean);
    };
    const batching = this.s.batch > 1;
    for (let i = 0; i < t.duplicates.count; i++) {
      const m = cleanPick('transport.duplicates');
      const delayIntervals = this.rng.int(0, t.duplicates.maxDelayIntervals);
      const ts = this.readingTime('transport.duplicates', m, whole, delayIntervals);
      const variant = batching && this.rng.chance(t.duplicates.batchShare) ? 'batch' : 'single';
      this.add({ type: 'duplicate', id: this.nextId('duplicate'), magnitude: 'clear', meter: m.index, startMs: ts, endMs: ts, variant, delayIntervals });
    }
    for (let i = 0; i < t.outOfOrder.count; i++) {
      const m = cleanPick('transport.outOfOrder');
      // Keep the delay within 90 minutes: the stream worker's per-meter lateness tolerance is 2 h by default.
      const delayIntervals = Math.max(1, Math.min(Math.round(draw(this.rng, t.outOfOrder.delayIntervals)), Math.floor(90 / m.intervalMinutes)));
      const ts = this.readingTime('transport.outOfOrder', m, whole, delayIntervals);
      this.add({ type: 'outOfOrder', id: this.nextId('outOfOrder'), magnitude: 'clear', meter: m.index, startMs: ts, endMs: ts, delayIntervals });
    }
    const variants = t.malformed.variants;
    for (let i = 0; i < t.malformed.count && variants.length > 0; i++) {
      // Round-robin over the variants, so a handful of malformed messages already covers every rejection reason.
      const variant = variants[i % variants.length] ?? 'notJson';
      const m = cleanPick('transport.malformed');
      const ts =
        variant === 'badElementInBatch'
          ? this.readingTime('transport.malformed', m, whole, 0)
          : this.start('transport.malformed', [this.s.fromMs + 900_000, this.s.toMs], 0, 900_000);
      const other = this.rng.pick(this.fleet.meters.filter((o) => o.index !== m.index).concat(this.fleet.meters.length === 1 ? [m] : []));
      this.add({
        type: 'malformed',
        id: this.nextId('malformed'),
        magnitude: 'clear',
        meter: m.index,
        startMs: ts,
        endMs: ts,
        variant,
        otherMeter: other.index,
      });
    }
  }

  /** Moderate injections per meter so far (their [start, end] spans). */
  private readonly moderateSpans = new Map<number, Array<[number, number]>>();

  /**
   * A meter for a moderate injection and the injection's span: meters with no clear injection, each taking up to
   * `moderatePerMeter` moderate ones (as real buildings show several labelled runs), two days apart at least.
   */
  private placeModerate<T extends { startMs: number; endMs: number }>(
    what: string,
    eligible: (m: MeterModel) => boolean,
    make: (m: MeterModel) => T,
  ): { m: MeterModel; v: T } {
    const per = this.s.anomalies.moderatePerMeter;
    const gap = 2 * 86_400_000;
    for (let attempt = 0; attempt < 50; attempt++) {
      const pool = this.fleet.meters.filter((x) => !this.usedMeters.has(x.index) && eligible(x) && (this.moderateSpans.get(x.index)?.length ?? 0) < per);
      if (pool.length === 0) throw new ScenarioError(`${what}: no eligible meter left; add meters or lower the counts`);
      const m = this.rng.pick(pool);
      const v = make(m);
      const taken = this.moderateSpans.get(m.index) ?? [];
      if (taken.some(([a, b]) => v.startMs < b + gap && v.endMs > a - gap)) continue;
      taken.push([v.startMs, v.endMs]);
      this.moderateSpans.set(m.index, taken);
      return { m, v };
    }
    throw new ScenarioError(`${what}: no free span left on the eligible meters; add meters, widen the window or lower the counts`);
  }

  /** Moderate and collective anomalies (magnitude `moderate`), after the clear ones so their draws stay as they were. */
  private moderateAnomalies(noPv: (m: MeterModel) => boolean): void {
    const a = this.s.anomalies;
    const base = (type: string, m: MeterModel, startMs: number, endMs: number) => ({
      id: this.nextId(type),
      magnitude: 'moderate' as const,
      startMs,
      endMs,
      meter: m.index,
    });
    const iv = (m: MeterModel) => m.intervalMinutes * 60_000;
    const hasDayShape = (m: MeterModel) => m.profile === 'commercial' || m.profile === 'industrialTwoShift' || m.profile === 'residential';
    {
      // A level shift lasts to the end of the run: its meter carries nothing else.
      const c = a.levelShift;
      const win = this.window(c.window);
      for (let i = 0; i < c.count; i++) {
        const m = this.takeMeter('anomalies.levelShift', noPv);
        const up = this.rng.chance(c.upShare);
        const factor = draw(this.rng, up ? c.up : c.down);
        const startMs = this.start('anomalies.levelShift', win, 0, ALIGN_MS);
        const endMs = Math.min(this.s.toMs, startMs + c.adoptDays * 86_400_000);
        this.add({ ...base('levelShift', m, startMs, endMs), type: 'levelShift', factor, effectEndMs: this.s.toMs });
      }
    }
    {
      const c = a.highUsage;
      const win = this.window(c.window);
      const v = c.variants;
      for (let i = 0; i < c.count; i++) {
        const x = this.rng.next() * (v.allDay + v.nights + v.nightShift);
        const variant: HighUsageVariant = x < v.allDay ? 'allDay' : x < v.allDay + v.nights ? 'nights' : 'nightShift';
        const factor = draw(this.rng, c.factor);
        const hours = draw(this.rng, c.hours);
        const { m, v: placed } = this.placeModerate('anomalies.highUsage', noPv, (m) => {
          let spans: Array<[number, number]>;
          if (variant === 'allDay') {
            const sp = this.span(m, win, 'anomalies.highUsage', hours, {});
            spans = [[sp.startMs, sp.endMs]];
          } else {
            const [lo, hi] = this.localDays('anomalies.highUsage', win, Math.max(1, Math.ceil(hours / 24)), false);
            spans = [];
            for (let t = lo; t < hi; t += iv(m)) {
              const c2 = this.cal(t + iv(m) / 2);
              if (!highUsageHour(variant, Math.floor(c2.hour), c2.weekday, c2.holiday)) continue;
              const last = spans[spans.length - 1];
              if (last !== undefined && last[1] === t) last[1] = t + iv(m);
              else spans.push([t, t + iv(m)]);
            }
          }
          return { spans, startMs: spans[0]?.[0] ?? 0, endMs: spans[spans.length - 1]?.[1] ?? 0 };
        });
        if (placed.spans.length === 0) throw new ScenarioError('anomalies.highUsage: no hour of the span is touched');
        this.add({ ...base('highUsage', m, placed.startMs, placed.endMs), type: 'highUsage', variant, factor, spans: placed.spans });
      }
    }
    {
      const c = a.stuck;
      const win = this.window(c.window);
      for (let i = 0; i < c.count; i++) {
        const hours = draw(this.rng, c.hours);
        // A stuck value only shows where the meter would have moved: skip the quietest customers.
        const { m, v: sp } = this.placeModerate(
          'anomalies.stuck',
          (x) => noPv(x) && x.meanW >= 300,
          (m) => this.span(m, win, 'anomalies.stuck', hours, {}),
        );
        const c2 = this.cal(sp.startMs - iv(m) / 2);
        const wh = Math.max(1, Math.round((expectedLoadW(m, { ...c2, weekday: c2.holiday ? 7 : c2.weekday }, this.s.profile.seasonal) * iv(m)) / HOUR));
        this.add({ ...base('stuck', m, sp.startMs, sp.endMs), type: 'stuck', wh });
      }
    }
    {
      const c = a.placeholder;
      const win = this.window(c.window);
      for (let i = 0; i < c.count; i++) {
        const whPerHour = this.rng.pick(c.whPerHour);
        const hours = draw(this.rng, c.hours);
        const { m, v: sp } = this.placeModerate('anomalies.placeholder', noPv, (m) => this.span(m, win, 'anomalies.placeholder', hours, {}));
        this.add({
          ...base('placeholder', m, sp.startMs, sp.endMs),
          type: 'placeholder',
          whPerHour,
          wh: Math.max(1, Math.round((whPerHour * m.intervalMinutes) / 60)),
        });
      }
    }
    {
      const c = a.lowDay;
      const win = this.window(c.window);
      for (let i = 0; i < c.count; i++) {
        const share = draw(this.rng, c.share);
        const { m, v } = this.placeModerate(
          'anomalies.lowDay',
          (x) => noPv(x) && x.class !== 'residential',
          () => {
            const [startMs, endMs] = this.localDays('anomalies.lowDay', win, 1, true);
            return { startMs, endMs };
          },
        );
        this.add({ ...base('lowDay', m, v.startMs, v.endMs), type: 'lowDay', share });
      }
    }
    {
      const c = a.shape;
      const win = this.window(c.window);
      for (let i = 0; i < c.count; i++) {
        const days = Math.max(1, Math.round(draw(this.rng, c.days)));
        // Whole hours, so every interval length sees the same shifted profile.
        const shiftH = (this.rng.chance(0.5) ? 1 : -1) * Math.round(draw(this.rng, c.shiftHours));
        const { m, v } = this.placeModerate(
          'anomalies.shape',
          (x) => noPv(x) && hasDayShape(x),
          () => {
            const [startMs, endMs] = this.localDays('anomalies.shape', win, days, true);
            return { startMs, endMs };
          },
        );
        this.add({ ...base('shape', m, v.startMs, v.endMs), type: 'shape', shiftH });
      }
    }
    // Transport faults go to meters with no anomaly at all.
    for (const m of this.moderateSpans.keys()) this.usedMeters.add(m);
  }

  private span(m: MeterModel, win: [number, number], what: string, hours: number, extra: Record<string, number | string>) {
    return this.spanIntervals(m, win, what, (hours * HOUR) / (m.intervalMinutes * 60_000), extra);
  }

  private spanIntervals(m: MeterModel, win: [number, number], what: string, intervals: number, extra: Record<string, number | string>) {
    const iv = m.intervalMinutes * 60_000;
    const dur = Math.max(1, Math.round(intervals)) * iv;
    const startMs = this.start(what, win, dur, iv);
    return { startMs, endMs: startMs + dur, extra };
  }

  /** A start at a local evening hour on some day of the window. */
  private eveningStart(win: [number, number], durationMs: number, hourRange: Range): number {
    const zone = this.s.timezone;
    const first = DateTime.fromMillis(win[0], { zone }).startOf('day');
    const days = Math.floor((win[1] - win[0]) / 86_400_000) + 1;
    for (let attempt = 0; attempt < 50; attempt++) {
      const day = first.plus({ days: this.rng.int(0, Math.max(0, days - 1)) });
      const hour = Math.floor(draw(this.rng, hourRange));
      const startMs = day.set({ hour }).toMillis();
      if (startMs >= win[0] && startMs + durationMs <= win[1] && startMs % ALIGN_MS === 0) return startMs;
    }
    return this.start('anomalies.feederOverload', win, durationMs, ALIGN_MS);
  }

  /** Clear, then subtle injections of a type with `clear` and `subtle` ranges. */
  private mags(type: ClearType): Array<'clear' | 'subtle'> {
    const c = this.s.anomalies[type];
    return this.magnitudes(c.count, c.subtleShare);
  }

  private meterAnomaly<M extends Magnitude>(
    type: ClearType,
    eligible: (m: MeterModel, magnitude: M) => boolean,
    magnitudes: readonly M[],
    make: (m: MeterModel, magnitude: M, win: [number, number]) => { startMs: number; endMs: number; extra: Record<string, number | string> },
  ): void {
    const c = this.s.anomalies[type];
    const win = this.window(c.window);
    for (const magnitude of magnitudes) {
      const m = this.takeMeter(`anomalies.${type}`, (x) => eligible(x, magnitude));
      const { startMs, endMs, extra } = make(m, magnitude, win);
      const id = this.nextId(type);
      const base = { id, magnitude, startMs, endMs, meter: m.index };
      const num = (k: string) => (typeof extra[k] === 'number' ? extra[k] : 0);
      switch (type) {
        case 'spike':
          this.add({ ...base, type, powerW: num('powerW'), expectedW: num('expectedW'), factor: num('factor'), floorW: num('floorW') });
          break;
        case 'drop':
          this.add({ ...base, type, bypass: num('bypass') });
          break;
        case 'flatline':
        case 'silent':
          this.add({ ...base, type });
          break;
        case 'reverseFlow':
          this.add({ ...base, type, fraction: num('fraction') });
          break;
        case 'voltage':
          this.add({ ...base, type, variant: extra.variant === 'swell' ? 'swell' : 'sag', level: num('level') });
          break;
        case 'customerPeak':
          this.add({ ...base, type, powerW: num('powerW'), factor: num('factor') });
          break;
        case 'registerReset':
          this.add({ ...base, type, newStartWh: num('newStartWh') });
          break;
      }
    }
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Decides every injection of the scenario; same fleet, scenario and seed → same plan. */
export function planScenario(fleet: Fleet, scenario: ResolvedScenario): Plan {
  const planner = new Planner(fleet, scenario);
  planner.plan();
  const injections = planner.injections;
  const truth = injections.map((inj) => truthOf(inj, fleet, scenario)).sort((x, y) => x.startMs - y.startMs || x.id.localeCompare(y.id));
  return { injections, truth, dr: planDemandResponse(fleet, scenario) };
}

const ANOMALY_TYPES = new Set<string>(TRUTH_ANOMALIES);

/** Holiday dates (yyyy-mm-dd) as the calendar's day keys (yyyymmdd). */
export function holidayKeys(dates: readonly string[]): Set<number> {
  return new Set(dates.map((d) => Number(d.replaceAll('-', ''))));
}

function truthOf(inj: Injection, fleet: Fleet, s: ResolvedScenario): TruthRecord {
  const kind = ANOMALY_TYPES.has(inj.type) ? 'anomaly' : 'transport';
  const hours = round((inj.endMs - inj.startMs) / HOUR, 2);
  const common = {
    id: inj.id,
    kind,
    type: inj.type,
    magnitude: inj.magnitude,
    start: isoSeconds(inj.startMs),
    end: isoSeconds(inj.endMs),
    startMs: inj.startMs,
    endMs: inj.endMs,
    expectedAlso: EXPECTED_ALSO[inj.type],
  } as const;
  if ('group' in inj) {
    const g = fleet.groups[inj.group];
    const tr = g?.transformer;
    const meters = g?.meters.map((m) => m.meterId) ?? [];
    const params: TruthRecord['params'] = { hours, ratingKva: tr?.ratingKva ?? 0, meterCount: meters.length };
    if (inj.type === 'outage') {
      params.lastGasps = inj.lastGasp.length;
      params.powerRestored = inj.restored.length;
    } else if (inj.type === 'feederOverload') {
      params.factor = round(inj.factor, 3);
      params.targetKw = round(inj.targetW / 1000, 1);
      params.normalPeakKw = round((g?.peakW ?? 0) / 1000, 1);
    } else if (inj.type === 'lateBatch') {
      params.heldReadings = (g?.meters ?? []).reduce((n, m) => n + readingsIn(m, inj.startMs, inj.endMs), 0);
    }
    return {
      ...common,
      subjectKind: 'transformer',
      subject: tr?.transformerId ?? '',
      transformerId: tr?.transformerId ?? '',
      feederId: tr?.feederId ?? '',
      meters,
      params,
    };
  }
  const m = fleet.meters[inj.meter];
  if (m === undefined) throw new ScenarioError(`internal: injection ${inj.id} names meter #${inj.meter}`);
  const params: TruthRecord['params'] = {};
  let variant: string | undefined;
  switch (inj.type) {
    case 'spike':
      Object.assign(params, {
        intervals: (inj.endMs - inj.startMs) / (m.intervalMinutes * 60_000),
        factor: round(inj.factor, 2),
        floorW: Math.round(inj.floorW),
        expectedW: Math.round(inj.expectedW),
        powerW: Math.round(inj.powerW),
        ratio: round(inj.powerW / inj.expectedW, 2),
        contractKw: m.contractKw,
      });
      break;
    case 'drop':
      Object.assign(params, { hours, bypass: round(inj.bypass, 3) });
      break;
    case 'flatline':
      Object.assign(params, { hours });
      break;
    case 'reverseFlow':
      Object.assign(params, { hours, fraction: round(inj.fraction, 3) });
      break;
    case 'voltage':
      variant = inj.variant;
      Object.assign(params, {
        intervals: (inj.endMs - inj.startMs) / (m.intervalMinutes * 60_000),
        hours,
        level: round(inj.level, 3),
        voltageV: round(s.profile.voltage.nominal * inj.level, 1),
      });
      break;
    case 'silent':
      Object.assign(params, { hours, intervalMinutes: m.intervalMinutes, missedReadings: readingsIn(m, inj.startMs, inj.endMs) });
      break;
    case 'customerPeak':
      Object.assign(params, {
        intervals: (inj.endMs - inj.startMs) / (m.intervalMinutes * 60_000),
        factor: round(inj.factor, 3),
        contractKw: m.contractKw,
        powerW: Math.round(inj.powerW),
      });
      break;
    case 'registerReset':
      Object.assign(params, { newStartWh: inj.newStartWh });
      break;
    case 'highUsage':
      variant = inj.variant;
      Object.assign(params, { hours, factor: round(inj.factor, 3), affectedHours: round(inj.spans.reduce((n, [a, b]) => n + b - a, 0) / HOUR, 2) });
      break;
    case 'levelShift':
      variant = inj.factor > 1 ? 'up' : 'down';
      Object.assign(params, { hours, factor: round(inj.factor, 3), until: isoSeconds(inj.effectEndMs) });
      break;
    case 'stuck':
      Object.assign(params, { hours, wh: inj.wh });
      break;
    case 'placeholder':
      Object.assign(params, { hours, wh: inj.wh, whPerHour: inj.whPerHour });
      break;
    case 'lowDay':
      Object.assign(params, { hours, share: round(inj.share, 3) });
      break;
    case 'shape':
      Object.assign(params, { hours, shiftHours: inj.shiftH });
      break;
    case 'duplicate':
      variant = inj.variant;
      Object.assign(params, { delayIntervals: inj.delayIntervals });
      break;
    case 'outOfOrder':
      Object.assign(params, { delayIntervals: inj.delayIntervals });
      break;
    case 'malformed':
      variant = inj.variant;
      Object.assign(params, { dlqEntries: 1, expectedReason: MALFORMED_REASON[inj.variant] });
      break;
    case 'clockSkew':
      Object.assign(params, { hours, skewSeconds: inj.skewMs / 1000, readings: readingsIn(m, inj.startMs - 1, inj.endMs) });
      break;
  }
  return {
    ...common,
    ...(variant === undefined ? {} : { variant }),
    subjectKind: 'meter',
    subject: m.meterId,
    meterId: m.meterId,
    customerId: m.customerId,
    customerClass: m.class,
    ...(kind === 'anomaly' ? { intervalMinutes: m.intervalMinutes } : {}),
    transformerId: m.transformerId,
    feederId: m.feederId,
    meters: [m.meterId],
    ...(inj.type === 'highUsage' && inj.variant !== 'allDay' ? { spans: inj.spans.map(([a, b]): [number, number] => [a, b]) } : {}),
    params,
  };
}

/** Readings of meter `m` with ts in (fromMs, toMs]. */
function readingsIn(m: MeterModel, fromMs: number, toMs: number): number {
  const iv = m.intervalMinutes * 60_000;
  return Math.floor(toMs / iv) - Math.floor(fromMs / iv);
}
