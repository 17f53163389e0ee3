import type { Fleet, MeterModel } from './fleet.js';
import { badElement, malformedMessage } from './malformed.js';
import { holidayKeys, planScenario, type Injection, type Plan } from './plan.js';
import { Rng } from './prng.js';
import { CalendarClock, clearSky, hvacFactor, normalTempC, shape, shapeFloor, weekendScale } from './profiles.js';
import { WeatherSeries } from './weather.js';
import { drTruth, type DrTally, type DrTruthRecord } from './demand-response.js';
import type { ResolvedScenario } from './scenario.js';
import { isoSeconds } from './time-spec.js';
import { CUSTOMER_CLASSES, type CustomerClass } from '../src/contracts/registry.js';

/** One MQTT publish, in publish order. */
export interface SimMessage {
  topic: string;
  payload: string;
  /** The meter; for a concentrator batch the concentrator (= transformer) id. */
  meterId: string;
  /** Event time, ms: the reading's ts (an array's newest), the event's, or the step a malformed message is sent at. */
  ts: number;
  /** Simulated publish time, ms, non-decreasing: live mode publishes when the simulated clock reaches it. */
  at: number;
  kind: 'reading' | 'batch' | 'backlog' | 'late' | 'duplicate' | 'event' | 'malformed';
  /** Good readings in the message (for a duplicate: repeats of readings already sent). */
  readings: number;
  /** Messages or array elements in it that the ingest must dead-letter (malformed ones, a bad batch element). */
  rejects: number;
}

/** The true register of a meter at one of its interval ends. */
export interface LedgerRow {
  meterId: string;
  ts: number;
  importWh: number;
  exportWh: number;
  /** A reading with exactly this ts and these registers reaches the broker (possibly late); false when silent, unpowered or clock-skewed. */
  published: boolean;
}

export interface SimulationOptions {
  /** Concentrator batch size, overriding the scenario's (0 or 1 = single readings). */
  batch?: number;
  plan?: Plan;
  onLedger?: (row: LedgerRow) => void;
}

/** The simulator's base step: every interval length (15, 30, 60 min) is a multiple of it. */
export const STEP_MS = 900_000;

interface MeterState {
  importWh: number;
  exportWh: number;
  /** Energy not yet on the register, Wh in [0, 1): registers only ever show whole watt-hours. */
  importFrac: number;
  exportFrac: number;
  seq: number;
  noise: number;
  dayKey: number;
  dayFactor: number;
  /** Metered net power over the last step, W (negative when exporting). */
  powerW: number;
  frozen: { powerW: number; voltageV: number; currentA: number } | undefined;
  /** Latest reading as JSON, for on-demand reads. */
  latest: string | undefined;
  reachable: boolean;
  rng: Rng;
  vrng: Rng;
  /** Realism draws (occupancy, bursts): a stream of their own, so switching them on leaves the base noise as it was. */
  xrng: Rng;
  /** Today's occupancy factor on the load above the day's base. */
  occ: number;
  burstLeft: number;
  burstFactor: number;
}

type RangeInjection = Extract<Injection, { startMs: number }>;

/** One meter's part in a demand-response event, and what the engine has booked of it so far. */
interface DrPart {
  event: number;
  startMs: number;
  endMs: number;
  reboundEndMs: number;
  /** 1 − cut (1 for a participant that ignored the call). */
  factor: number;
  /** Share of the cut energy consumed again, evenly over [endMs, reboundEndMs). */
  rebound: number;
  tally: DrTally;
}

/** What a meter's register sees in one step, from its load and PV (`meterFlow`). */
interface Flow {
  net: number;
  importW: number;
  exportW: number;
  /** A stuck meter: its registers do not move. */
  flat: boolean;
  /** A stuck value or a placeholder: exactly this many Wh each of the meter's intervals. */
  fixedWh: number | undefined;
}

/** The meter's import and export power for a load, through the step's injections (pure: no state is touched). */
function meterFlow(effects: readonly RangeInjection[], t: number, load: number, pvW: number, outage: boolean): Flow {
  let consumption = load;
  let pv = pvW;
  for (const e of effects) {
    if (!stepIn(e, t)) continue;
    if (e.type === 'spike') consumption = Math.max(consumption, e.powerW);
    else if (e.type === 'customerPeak') consumption = e.powerW;
  }
  if (outage) {
    consumption = 0;
    pv = 0;
  }
  const net = consumption - pv;
  let importW = Math.max(net, 0);
  let exportW = Math.max(-net, 0);
  let flat = false;
  let fixedWh: number | undefined;
  for (const e of effects) {
    if (!stepIn(e, t)) continue;
    if (e.type === 'drop') importW *= 1 - e.bypass;
    else if (e.type === 'reverseFlow') {
      exportW += importW * e.fraction;
      importW *= 1 - e.fraction;
    } else if (e.type === 'flatline') flat = true;
    else if (e.type === 'stuck' || e.type === 'placeholder') fixedWh = e.wh;
  }
  return { net, importW, exportW, flat, fixedWh };
}

/** Import Wh a step adds to the register before rounding to whole watt-hours (what `fixedWh` adds at an interval end). */
function importEnergy(f: Flow, t: number, iv: number, accumulate: boolean): number {
  if (!accumulate) return 0;
  if (f.fixedWh !== undefined) return t % iv === 0 ? f.fixedWh : 0;
  return f.flat ? 0 : (f.importW * STEP_MS) / 3_600_000;
}

/** Covers the step (t - STEP, t]. */
const stepIn = (inj: RangeInjection, t: number) => t - STEP_MS >= inj.startMs && t <= inj.endMs;
/** A reading stamped ts falls in (start, end]. */
const readingIn = (inj: RangeInjection, ts: number) => ts > inj.startMs && ts <= inj.endMs;
const key = (meter: number, ts: number) => `${meter}:${ts}`;

function pushTo<K, V>(map: Map<K, V[]>, k: K, v: V): void {
  const list = map.get(k);
  if (list) list.push(v);
  else map.set(k, [v]);
}

function clip(x: number, lim: number): number {
  return x > lim ? lim : Math.max(x, -lim);
}

/** Student-t with `df` (≥ 3) degrees of freedom, scaled to unit variance: heavier tails than normal(). */
function studentT(rng: Rng, df: number): number {
  let chi2 = 0;
  for (let i = 0; i < df; i++) chi2 += rng.normal() ** 2;
  return (rng.normal() / Math.sqrt(chi2 / df)) * Math.sqrt((df - 2) / df);
}

const YEAR_MS = 365.25 * 86_400_000;

/**
 * Steps a fleet through time and yields the MQTT messages a real one would send, in publish order.
 * Deterministic: the scenario's seed drives every draw (one stream per meter, so injections never shift base loads).
 */
export class Simulation {
  readonly plan: Plan;
  readonly scenario: ResolvedScenario;
  /** End of the last step generated, ms. */
  simTime: number;
  private readonly states: MeterState[];
  private readonly byId: Map<string, number>;
  private readonly meterEffects: RangeInjection[][];
  /** Demand-response events each meter takes part in (empty for most). */
  private readonly drParts: DrPart[][];
  private readonly groupEffects: RangeInjection[][];
  private readonly groupOffset: number[];
  private readonly dupByKey = new Map<string, Extract<Injection, { type: 'duplicate' }>>();
  private readonly oooByKey = new Map<string, Extract<Injection, { type: 'outOfOrder' }>>();
  private readonly badByKey = new Set<string>();
  private readonly malformedAt = new Map<number, Array<Extract<Injection, { type: 'malformed' }>>>();
  private readonly eventsAt = new Map<number, Array<{ ts: number; meter: number; event: 'lastGasp' | 'powerRestored' }>>();
  /** Meter replacements by the step that installs the new meter (the one starting at the injection's start). */
  private readonly exchangesAt = new Map<number, Array<Extract<Injection, { type: 'registerReset' }>>>();
  private readonly held = new Map<number, SimMessage[]>();
  private readonly backlog = new Map<number, Array<{ meter: MeterModel; ts: number; payload: string }>>();
  private readonly weather: Rng;
  private readonly temperature: WeatherSeries;
  private readonly holidays: ReadonlySet<number>;
  private weatherDay = -1;
  private clearness = 1;
  private cloudy = false;
  private readonly batch: number;
  private readonly clock: CalendarClock;
  /** Per-group scratch space, reused every step. */
  private readonly scratch: Array<{ load: Float64Array; pv: Float64Array; exportW: Float64Array }>;

  constructor(
    readonly fleet: Fleet,
    scenario: ResolvedScenario,
    private readonly opts: SimulationOptions = {},
  ) {
    this.scenario = opts.batch === undefined ? scenario : { ...scenario, batch: opts.batch };
    this.batch = this.scenario.batch;
    this.plan = opts.plan ?? planScenario(fleet, this.scenario);
    this.simTime = this.scenario.fromMs;
    const s = this.scenario;
    const p = s.profile;
    this.states = fleet.meters.map((m) => {
      const rng = new Rng(s.seed, `meter:${m.meterId}`);
      return {
        importWh: m.startImportWh,
        exportWh: m.startExportWh,
        importFrac: 0,
        exportFrac: 0,
        seq: 0,
        noise: p.noise * clip(rng.normal(), 3),
        dayKey: -1,
        dayFactor: 1,
        powerW: 0,
        frozen: undefined,
        latest: undefined,
        reachable: true,
        rng,
        vrng: new Rng(s.seed, `volt:${m.meterId}`),
        xrng: new Rng(s.seed, `traits:${m.meterId}`),
        occ: 1,
        burstLeft: 0,
        burstFactor: 1,
      };
    });
    this.byId = new Map(fleet.meters.map((m) => [m.meterId, m.index]));
    this.meterEffects = fleet.meters.map(() => []);
    this.groupEffects = fleet.groups.map(() => []);
    const grid = new Rng(s.seed, 'grid');
    this.groupOffset = fleet.groups.map(() => grid.range(-0.01, 0.03));
    this.weather = new Rng(s.seed, 'weather');
    this.temperature = new WeatherSeries(s.seed, s.fromMs, s.toMs, p.weather);
    this.holidays = holidayKeys(s.calendar.holidays);
    this.clock = new CalendarClock(s.timezone);
    this.scratch = fleet.groups.map((g) => ({
      load: new Float64Array(g.meters.length),
      pv: new Float64Array(g.meters.length),
      exportW: new Float64Array(g.meters.length),
    }));
    for (const inj of this.plan.injections) this.index(inj);
    this.drParts = fleet.meters.map(() => []);
    this.plan.dr.forEach((e, event) => {
      for (const p of e.participants) {
        this.drParts[p.meter]?.push({
          event,
          startMs: e.startMs,
          endMs: e.endMs,
          reboundEndMs: e.reboundEndMs,
          factor: 1 - p.cut,
          rebound: p.responded ? e.rebound : 0,
          tally: { actualWh: 0, reductionWh: 0, reboundWh: 0, steps: 0, reboundSteps: 0 },
        });
      }
    });
  }

  /**
   * The truth of every demand-response event so far: participants, responders, and per participant the energy its
   * import register counted in the window and what it would have counted without the event (dr.jsonl).
   */
  drTruth(): DrTruthRecord[] {
    return drTruth(this.fleet, this.plan.dr, (event, meter) => this.drParts[meter]?.find((p) => p.event === event)?.tally);
  }

  private index(inj: Injection): void {
    switch (inj.type) {
      case 'outage':
        for (const e of inj.lastGasp) pushTo(this.eventsAt, Math.ceil(e.ts / STEP_MS) * STEP_MS, { ts: e.ts, meter: e.meter, event: 'lastGasp' as const });
        for (const e of inj.restored) pushTo(this.eventsAt, Math.ceil(e.ts / STEP_MS) * STEP_MS, { ts: e.ts, meter: e.meter, event: 'powerRestored' as const });
        this.groupEffects[inj.group]?.push(inj);
        return;
      case 'feederOverload':
      case 'lateBatch':
        this.groupEffects[inj.group]?.push(inj);
        return;
      case 'duplicate':
        this.dupByKey.set(key(inj.meter, inj.startMs), inj);
        return;
      case 'outOfOrder':
        this.oooByKey.set(key(inj.meter, inj.startMs), inj);
        return;
      case 'malformed':
        if (inj.variant === 'badElementInBatch') this.badByKey.add(key(inj.meter, inj.startMs));
        else pushTo(this.malformedAt, inj.startMs, inj);
        return;
      case 'registerReset':
        pushTo(this.exchangesAt, inj.startMs + STEP_MS, inj);
        this.meterEffects[inj.meter]?.push(inj);
        return;
      default:
        this.meterEffects[inj.meter]?.push(inj);
    }
  }

  /**
   * What the meter answers to an on-demand read: its latest reading (JSON), an error when it has not read yet,
   * or nothing at all when it is not in the fleet, unpowered or out of contact (the request times out).
   */
  readAnswer(meterId: string): { reading: string } | { error: string } | undefined {
    const i = this.byId.get(meterId);
    const st = i === undefined ? undefined : this.states[i];
    if (st === undefined || !st.reachable) return undefined;
    return st.latest === undefined ? { error: 'no reading yet' } : { reading: st.latest };
  }

  *messages(): Generator<SimMessage> {
    const s = this.scenario;
    for (let t = s.fromMs; t <= s.toMs; t += STEP_MS) {
      this.simTime = t;
      yield* this.step(t);
    }
    // Anything still held (a late message planned past the end) goes out at the end.
    for (const k of [...this.held.keys()].sort((a, b) => a - b)) {
      for (const m of this.held.get(k) ?? []) yield { ...m, at: s.toMs };
    }
    this.held.clear();
  }

  private step(t: number): SimMessage[] {
    const s = this.scenario;
    const out: SimMessage[] = [];
    this.exchangeOrders(t, out);
    for (const e of (this.eventsAt.get(t) ?? []).sort((a, b) => a.ts - b.ts || a.meter - b.meter)) {
      const m = this.fleet.meters[e.meter];
      if (m === undefined) continue;
      out.push({
        topic: `meters/${m.meterId}/events`,
        payload: `{"meterId":"${m.meterId}","ts":"${isoSeconds(e.ts)}","event":"${e.event}"}`,
        meterId: m.meterId,
        ts: e.ts,
        at: e.ts,
        kind: 'event',
        readings: 0,
        rejects: 0,
      });
    }

    const cal = this.clock.at(t - STEP_MS / 2);
    if (cal.dayKey !== this.weatherDay) {
      this.weatherDay = cal.dayKey;
      this.cloudy = this.weather.chance(0.35);
      this.clearness = this.cloudy ? this.weather.range(0.25, 0.7) : this.weather.range(0.85, 1);
    }
    const flicker = this.cloudy ? Math.min(1.3, Math.max(0.3, 1 + 0.25 * this.weather.normal())) : 1;
    const sky = clearSky(cal.hour, cal.dayOfYear, cal.dst) * this.clearness * flicker;
    // Heating and cooling at today's weather; a meter's own sensitivity scales the part above 1.
    const tempC = normalTempC(cal.dayOfYear) + this.temperature.anomalyAt(t - STEP_MS / 2);
    const seasonal: Record<CustomerClass, number> = { residential: 1, commercial: 1, industrial: 1, critical: 1 };
    for (const c of CUSTOMER_CLASSES) seasonal[c] = hvacFactor(c, tempC, s.profile.seasonal);
    // Holidays run every profile's Sunday.
    const weekday = this.holidays.has(cal.dayKey) ? 7 : cal.weekday;
    const years = (t - s.fromMs) / YEAR_MS;
    const accumulate = t > s.fromMs;
    const iso = isoSeconds(t);
    const p = s.profile;
    const burstP = p.bursts.perDay / 96;
    const ar = Math.sqrt(1 - p.noiseCorrelation ** 2) * p.noise;
    const nominal = p.voltage.nominal;

    this.fleet.groups.forEach((g, gi) => {
      const effects = this.groupEffects[gi] ?? [];
      const outage = effects.find((e) => e.type === 'outage' && stepIn(e, t));
      const outageRead = effects.find((e) => e.type === 'outage' && readingIn(e, t));
      const overload = effects.find((e): e is Extract<Injection, { type: 'feederOverload' }> => e.type === 'feederOverload' && stepIn(e, t));
      const late = effects.find((e) => e.type === 'lateBatch' && readingIn(e, t));

      const buf = this.scratch[gi];
      if (buf === undefined) return;
      const loads = buf.load;
      const pvs = buf.pv;
      const exports = buf.exportW;
      g.meters.forEach((m, k) => {
        const st = this.states[m.index];
        if (st === undefined) return;
        if (cal.dayKey !== st.dayKey) {
          st.dayKey = cal.dayKey;
          st.dayFactor = Math.exp(clip(p.dailyNoise * st.rng.normal(), 3 * p.dailyNoise));
          if (p.occupancy > 0) st.occ = Math.exp(clip(p.occupancy * st.xrng.normal(), 3 * p.occupancy));
        }
        st.noise = p.noiseCorrelation * st.noise + ar * (p.tailDf > 0 ? studentT(st.rng, p.tailDf) : st.rng.normal());
        const nf = Math.exp(clip(st.noise, 3 * p.noise) - (p.noise * p.noise) / 2);
        let shiftH = m.hourShift;
        let factor = 1;
        for (const e of this.meterEffects[m.index] ?? []) {
          if (e.type === 'levelShift') {
            if (t - STEP_MS >= e.startMs && t <= e.effectEndMs) factor *= e.factor;
            continue;
          }
          if (!stepIn(e, t)) continue;
          if (e.type === 'shape') shiftH += e.shiftH;
          else if (e.type === 'lowDay') factor *= e.share;
          else if (e.type === 'highUsage' && e.spans.some(([a, b]) => t - STEP_MS >= a && t <= b)) factor *= e.factor;
        }
        let sh = shape(m.profile, cal.hour, weekday, shiftH);
        if (p.occupancy > 0) {
          const floor = shapeFloor(m.profile, weekday);
          sh = floor + st.occ * (sh - floor);
        }
        if (burstP > 0) {
          if (st.burstLeft > 0) st.burstLeft--;
          else if (st.xrng.chance(burstP)) {
            st.burstLeft = Math.max(1, Math.round(st.xrng.range(p.bursts.steps[0], p.bursts.steps[1]))) - 1;
            st.burstFactor = st.xrng.range(p.bursts.factor[0], p.bursts.factor[1]);
          } else st.burstFactor = 1;
          factor *= st.burstFactor;
        }
        const hvac = 1 + m.hvac * (seasonal[m.class] - 1);
        loads[k] = m.meanW * sh * weekendScale(m, weekday) * hvac * (1 + m.growthPerYear * years) * st.dayFactor * nf * factor;
        pvs[k] = m.pvKwp > 0 ? Math.max(0, m.pvKwp * 850 * sky * (1 + 0.05 * clip(st.rng.normal(), 3))) : 0;
      });
      if (overload) {
        // A coincident evening peak: everyone's load scaled so the transformer reaches the target.
        let sum = 0;
        for (let k = 0; k < g.meters.length; k++) sum += loads[k] ?? 0;
        const scale = sum > 0 ? Math.max(1, overload.targetW / sum) : 1;
        for (let k = 0; k < g.meters.length; k++) loads[k] = (loads[k] ?? 0) * scale;
      }

      let netSum = 0;
      g.meters.forEach((m, k) => {
        const st = this.states[m.index];
        const effects = this.meterEffects[m.index] ?? [];
        for (const e of effects) {
          if (e.type === 'registerReset' && st && t - STEP_MS === e.startMs) {
            // Meter replaced: the new one starts near zero with its own sequence.
            st.importWh = e.newStartWh;
            st.exportWh = 0;
            st.importFrac = 0;
            st.exportFrac = 0;
            st.seq = 0;
          }
        }
        const load = loads[k] ?? 0;
        const pv = pvs[k] ?? 0;
        const iv = m.intervalMinutes * 60_000;
        // Demand response: a responder sheds its load in the window and takes some of it back after.
        const dr = this.drParts[m.index]?.find((d) => t - STEP_MS >= d.startMs && t <= d.reboundEndMs);
        let flow: Flow;
        let counterfactual: Flow | undefined;
        if (dr === undefined) flow = meterFlow(effects, t, load, pv, outage !== undefined);
        else {
          const inWindow = t <= dr.endMs;
          const reboundW = inWindow || dr.rebound === 0 ? 0 : (dr.rebound * dr.tally.reductionWh * 3_600_000) / (dr.reboundEndMs - dr.endMs);
          flow = meterFlow(effects, t, inWindow ? load * dr.factor : load + reboundW, pv, outage !== undefined);
          counterfactual = meterFlow(effects, t, load, pv, outage !== undefined);
        }
        const { net, flat, fixedWh } = flow;
        let { importW, exportW } = flow;
        netSum += net;
        const registered = st?.importWh ?? 0;
        if (fixedWh !== undefined) {
          // Whole watt-hours on the register at the meter's own interval ends, so every interval reads exactly fixedWh.
          importW = (fixedWh * 3_600_000) / iv;
          exportW = 0;
          if (st && accumulate && t % iv === 0) st.importWh += fixedWh;
        } else if (st && accumulate && !flat) {
          st.importFrac += (importW * STEP_MS) / 3_600_000;
          st.exportFrac += (exportW * STEP_MS) / 3_600_000;
          const wi = Math.floor(st.importFrac);
          const we = Math.floor(st.exportFrac);
          st.importWh += wi;
          st.exportWh += we;
          st.importFrac -= wi;
          st.exportFrac -= we;
        }
        if (st) st.powerW = importW - exportW;
        exports[k] = exportW;
        if (dr !== undefined && counterfactual !== undefined) {
          const shed = importEnergy(counterfactual, t, iv, accumulate) - importEnergy(flow, t, iv, accumulate);
          if (t <= dr.endMs) {
            dr.tally.actualWh += (st?.importWh ?? 0) - registered;
            dr.tally.reductionWh += shed;
            dr.tally.steps++;
          } else {
            dr.tally.reboundWh -= shed;
            dr.tally.reboundSteps++;
          }
        }
      });

      const utilization = Math.max(0, netSum) / (g.transformer.ratingKva * 1000);
      const normal: Array<{ meter: MeterModel; payload: string }> = [];
      g.meters.forEach((m, k) => {
        const iv = m.intervalMinutes * 60_000;
        const st = this.states[m.index];
        if (t % iv !== 0 || st === undefined) return;
        const vNoise = st.vrng.normal();
        const pvRise = m.pvKwp > 0 ? (0.02 * (exports[k] ?? 0)) / (m.pvKwp * 1000) : 0;
        let voltageV =
          nominal * Math.min(1.07, Math.max(0.93, 1 + (this.groupOffset[gi] ?? 0) - 0.04 * utilization + pvRise)) + p.voltage.noise * clip(vNoise, 3);
        let skewMs = 0;
        let suppressed = outageRead !== undefined;
        let flat = false;
        for (const e of this.meterEffects[m.index] ?? []) {
          if (e.type === 'voltage' && readingIn(e, t)) voltageV = nominal * e.level + 0.5 * p.voltage.noise * clip(vNoise, 3);
          else if (e.type === 'silent' && readingIn(e, t)) suppressed = true;
          else if (e.type === 'flatline' && readingIn(e, t)) flat = true;
          else if (e.type === 'clockSkew' && t >= e.startMs && t <= e.endMs) skewMs = e.skewMs;
        }
        st.seq++;
        const powerW = Math.round(st.powerW);
        let values = {
          powerW,
          voltageV: Math.round(voltageV * 10) / 10,
          currentA: Math.round((Math.abs(powerW) / (m.threePhase ? 3 * voltageV : voltageV)) * 100) / 100,
        };
        // A stuck meter repeats its last values, not only its register.
        if (flat && st.frozen) values = st.frozen;
        else st.frozen = values;
        const payload = `{"meterId":"${m.meterId}","ts":"${skewMs === 0 ? iso : isoSeconds(t + skewMs)}","seq":${st.seq},"importWh":${st.importWh},"exportWh":${st.exportWh},"powerW":${values.powerW},"voltageV":${values.voltageV},"currentA":${values.currentA}}`;
        st.latest = payload;
        st.reachable = !suppressed && late === undefined;
        this.opts.onLedger?.({ meterId: m.meterId, ts: t, importWh: st.importWh, exportWh: st.exportWh, published: !suppressed && skewMs === 0 });
        if (suppressed) return;
        if (late) {
          pushTo(this.backlog, gi, { meter: m, ts: t, payload });
          return;
        }
        const ooo = this.oooByKey.get(key(m.index, t));
        if (ooo) {
          pushTo(this.held, t + ooo.delayIntervals * iv, {
            topic: `meters/${m.meterId}/readings`,
            payload,
            meterId: m.meterId,
            ts: t,
            at: t,
            kind: 'late',
            readings: 1,
            rejects: 0,
          });
          return;
        }
        normal.push({ meter: m, payload });
      });
      this.emitNormal(g.transformer.transformerId, normal, t, out);

      for (const e of effects) {
        if (e.type === 'lateBatch' && e.endMs === t) this.releaseBacklog(gi, g.transformer.transformerId, t, out);
      }
    });

    for (const m of this.held.get(t) ?? []) out.push({ ...m, at: t });
    this.held.delete(t);
    for (const inj of this.malformedAt.get(t) ?? []) {
      if (inj.variant === 'badElementInBatch') continue;
      const m = this.fleet.meters[inj.meter];
      const other = this.fleet.meters[inj.otherMeter];
      if (!m || !other) continue;
      const msg = malformedMessage(inj.variant, m.meterId, other.meterId, t, s.transport.malformed.oversizeBytes);
      out.push({ ...msg, meterId: m.meterId, ts: t, at: t, kind: 'malformed', readings: 0, rejects: 1 });
    }
    return out;
  }

  /**
   * The work orders of the meters replaced in this step (their registers jump in the meter loop below): published
   * at the install time, before anything of this step, with the old meter's register then as the removal read, on
   * the head end's own topic (a meterExchange on the meter's events topic is dead-lettered).
   */
  private exchangeOrders(t: number, out: SimMessage[]): void {
    for (const e of (this.exchangesAt.get(t) ?? []).sort((a, b) => a.meter - b.meter)) {
      const m = this.fleet.meters[e.meter];
      const st = this.states[e.meter];
      if (m === undefined || st === undefined) continue;
      out.push({
        topic: `headend/meters/${m.meterId}/exchange`,
        payload: `{"meterId":"${m.meterId}","ts":"${isoSeconds(e.startMs)}","event":"meterExchange","installWh":${e.newStartWh},"removalWh":${st.importWh},"installExportWh":0}`,
        meterId: m.meterId,
        ts: e.startMs,
        at: e.startMs,
        kind: 'event',
        readings: 0,
        rejects: 0,
      });
    }
  }

  /** This step's on-time readings of one transformer: singles on meter topics, or concentrator arrays of up to `batch`. */
  private emitNormal(concentrator: string, readings: Array<{ meter: MeterModel; payload: string }>, t: number, out: SimMessage[]): void {
    if (this.batch > 1) {
      for (let at = 0; at < readings.length; at += this.batch) {
        const chunk = readings.slice(at, at + this.batch);
        const parts: string[] = [];
        let rejects = 0;
        let dup: Extract<Injection, { type: 'duplicate' }> | undefined;
        for (const r of chunk) {
          parts.push(r.payload);
          if (this.badByKey.has(key(r.meter.index, t))) {
            parts.push(badElement(r.meter.meterId, t));
            rejects++;
          }
          const d = this.dupByKey.get(key(r.meter.index, t));
          if (d) {
            if (d.variant === 'batch') dup = d;
            else this.scheduleDuplicate(r.meter, r.payload, t, d);
          }
        }
        const msg: SimMessage = {
          topic: `concentrators/${concentrator}/readings`,
          payload: `[${parts.join(',')}]`,
          meterId: concentrator,
          ts: t,
          at: t,
          kind: 'batch',
          readings: chunk.length,
          rejects,
        };
        out.push(msg);
        if (dup) {
          // The concentrator re-sends the whole array (its good readings) after a lost acknowledgement.
          const clean = `[${chunk.map((r) => r.payload).join(',')}]`;
          pushTo(this.held, t + dup.delayIntervals * this.intervalOf(dup.meter), { ...msg, payload: clean, kind: 'duplicate', rejects: 0 });
        }
      }
      return;
    }
    for (const r of readings) {
      const topic = `meters/${r.meter.meterId}/readings`;
      const bad = this.badByKey.has(key(r.meter.index, t));
      out.push({
        topic,
        payload: bad ? `[${r.payload},${badElement(r.meter.meterId, t)}]` : r.payload,
        meterId: r.meter.meterId,
        ts: t,
        at: t,
        kind: 'reading',
        readings: 1,
        rejects: bad ? 1 : 0,
      });
      const d = this.dupByKey.get(key(r.meter.index, t));
      if (d) this.scheduleDuplicate(r.meter, r.payload, t, d);
    }
  }

  private intervalOf(meter: number): number {
    return (this.fleet.meters[meter]?.intervalMinutes ?? 15) * 60_000;
  }

  private scheduleDuplicate(m: MeterModel, payload: string, t: number, d: Extract<Injection, { type: 'duplicate' }>): void {
    pushTo(this.held, t + d.delayIntervals * m.intervalMinutes * 60_000, {
      topic: `meters/${m.meterId}/readings`,
      payload,
      meterId: m.meterId,
      ts: t,
      at: t,
      kind: 'duplicate',
      readings: 1,
      rejects: 0,
    });
  }

  /** A concentrator back online: its backlog, oldest first, as concentrator arrays or per-meter arrays. */
  private releaseBacklog(gi: number, concentrator: string, t: number, out: SimMessage[]): void {
    const held = this.backlog.get(gi) ?? [];
    this.backlog.delete(gi);
    if (this.batch > 1) {
      for (let at = 0; at < held.length; at += this.batch) {
        const chunk = held.slice(at, at + this.batch);
        out.push({
          topic: `concentrators/${concentrator}/readings`,
          payload: `[${chunk.map((r) => r.payload).join(',')}]`,
          meterId: concentrator,
          ts: chunk[chunk.length - 1]?.ts ?? t,
          at: t,
          kind: 'backlog',
          readings: chunk.length,
          rejects: 0,
        });
      }
      return;
    }
    const byMeter = new Map<number, typeof held>();
    for (const r of held) pushTo(byMeter, r.meter.index, r);
    for (const [, list] of [...byMeter.entries()].sort((a, b) => a[0] - b[0])) {
      for (let at = 0; at < list.length; at += this.scenario.backlogChunk) {
        const chunk = list.slice(at, at + this.scenario.backlogChunk);
        const first = chunk[0];
        if (!first) continue;
        out.push({
          topic: `meters/${first.meter.meterId}/readings`,
          payload: `[${chunk.map((r) => r.payload).join(',')}]`,
          meterId: first.meter.meterId,
          ts: chunk[chunk.length - 1]?.ts ?? t,
          at: t,
          kind: 'backlog',
          readings: chunk.length,
          rejects: 0,
        });
      }
    }
  }
}

/** The messages of a scenario in publish order (see Simulation for the ledger and on-demand reads). */
export function simulateMessages(fleet: Fleet, scenario: ResolvedScenario, opts: SimulationOptions = {}): Iterable<SimMessage> {
  return new Simulation(fleet, scenario, opts).messages();
}
