import { CUSTOMER_CLASSES, type CustomerClass, type CustomerRecord, type TransformerRecord } from '../src/contracts/registry.js';
import { expectedLoadW, type ProfileKind } from './profiles.js';
import { Rng } from './prng.js';
import { intervalShare, type IntervalMinutes, type Range, type ResolvedScenario } from './scenario.js';

export type { IntervalMinutes };

/**
 * A customer row as the registry holds it. Spelled out here (same fields as the contract's CustomerRecord)
 * because the contract's `class` and `intervalMinutes` statics come out as `never` from `Type.Union(list.map(…))`.
 */
export type FleetCustomer = Omit<CustomerRecord, 'class' | 'intervalMinutes'> & { class: CustomerClass; intervalMinutes: IntervalMinutes };

/** What the simulator knows about a meter beyond its registry row. */
export interface MeterModel extends FleetCustomer {
  /** Position in `Fleet.meters` (and `Fleet.customers`). */
  index: number;
  profile: ProfileKind;
  /** Average load, W (before season, noise and PV). */
  meanW: number;
  /** The household's habits shifted by this many hours. */
  hourShift: number;
  /** Rooftop PV peak power, kW; 0 without PV. */
  pvKwp: number;
  startImportWh: number;
  startExportWh: number;
  threePhase: boolean;
  /** Noise-free yearly peak load, W (contract sizing, spike caps), at the scenario's most extreme weather. */
  peakW: number;
  /** Heating and cooling sensitivity relative to the class (profile.hvacSpread). */
  hvac: number;
  /** Saturday and Sunday (and holiday) levels relative to the profile's (profile.weekendSpread). */
  satScale: number;
  sunScale: number;
  /** Gradual growth of the load per year (profile.growthPerYear). */
  growthPerYear: number;
}

export interface TransformerGroup {
  transformer: TransformerRecord;
  meters: MeterModel[];
  /** Noise-free coincident peak of its meters, W. */
  peakW: number;
}

export interface Fleet {
  customers: FleetCustomer[];
  transformers: TransformerRecord[];
  meters: MeterModel[];
  groups: TransformerGroup[];
}

const CONTRACT_STEPS_KW: Record<CustomerClass, readonly number[]> = {
  residential: [3.45, 4.6, 5.75, 6.9, 8.05, 9.2, 10.35, 11.5, 14.49],
  commercial: [10, 15, 20, 25, 30, 40, 50, 63, 80, 100, 125, 160, 200, 250],
  industrial: [50, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 800, 1000, 1250, 1600, 2000, 2500],
  critical: [50, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 800, 1000, 1250, 1600, 2000, 2500],
};
const STANDARD_KVA: readonly number[] = [25, 50, 63, 75, 100, 125, 160, 200, 250, 315, 400, 500, 630, 800, 1000, 1250, 1600, 2000, 2500, 3150, 4000, 5000];

function stepAtLeast(steps: readonly number[], value: number, beyond: number): number {
  for (const s of steps) if (s >= value) return s;
  return Math.ceil(value / beyond) * beyond;
}

/** Exact counts per key from shares (largest remainder), so 0.12 of 100 meters is 12, not "about 12". */
export function allocate<K extends string>(shares: ReadonlyArray<[K, number]>, n: number): Map<K, number> {
  const total = shares.reduce((s, [, w]) => s + w, 0);
  const exact = shares.map(([k, w]) => [k, total > 0 ? (w / total) * n : 0] as const);
  const counts = new Map<K, number>(exact.map(([k, x]) => [k, Math.floor(x)]));
  let left = n - [...counts.values()].reduce((a, b) => a + b, 0);
  const byRemainder = [...exact].sort((a, b) => b[1] - Math.floor(b[1]) - (a[1] - Math.floor(a[1])));
  for (const [k] of byRemainder) {
    if (left <= 0) break;
    counts.set(k, (counts.get(k) ?? 0) + 1);
    left--;
  }
  return counts;
}

function logUniform(rng: Rng, [lo, hi]: Range): number {
  return lo > 0 && hi > lo ? Math.exp(rng.range(Math.log(lo), Math.log(hi))) : lo;
}

function draw(rng: Rng, [lo, hi]: Range): number {
  return lo === hi ? lo : rng.range(lo, hi);
}

/** Representative calendar points for sizing: every quarter hour of a winter and a summer week. */
const SIZING_POINTS = [15, 196].flatMap((dayOfYear) =>
  Array.from({ length: 7 * 96 }, (_, i) => ({ hour: ((i % 96) + 0.5) / 4, weekday: Math.floor(i / 96) + 1, dayOfYear })),
);

/** Feeders → transformers → meters, deterministic in the scenario's seed. */
export function generateFleet(scenario: ResolvedScenario): Fleet {
  const f = scenario.fleet;
  const rng = new Rng(scenario.seed, 'fleet');
  const n = f.meters;
  const pad = (i: number, width: number) => String(i).padStart(width, '0');

  const classCounts = allocate(
    CUSTOMER_CLASSES.map((c) => [c, f.classMix[c]]),
    n,
  );
  const classes = rng.shuffle(CUSTOMER_CLASSES.flatMap((c) => Array<CustomerClass>(classCounts.get(c) ?? 0).fill(c)));
  const intervalCounts = allocate(
    scenario.intervals.map((m) => [String(m), intervalShare(scenario, m)]),
    n,
  );
  const intervals = rng.shuffle(scenario.intervals.flatMap((m) => Array<IntervalMinutes>(intervalCounts.get(String(m)) ?? 0).fill(m)));

  const pvEligible = classes.flatMap((c, i) => (c === 'residential' || c === 'commercial' ? [i] : []));
  const pvSet = new Set(rng.shuffle(pvEligible).slice(0, Math.round(f.pvShare * pvEligible.length)));

  // Realism traits come from a stream of their own, so switching them on leaves every other draw as it was.
  const traitRng = new Rng(scenario.seed, 'fleet-traits');
  const p = scenario.profile;
  const spread = (x: number) => (x > 0 ? traitRng.range(1 - x, 1 + x) : 1);
  const weatherLim = 2.5 * p.weather.sigmaC;
  const tempOffsets = weatherLim > 0 ? [-weatherLim, 0, weatherLim] : [0];
  const years = (scenario.toMs - scenario.fromMs) / (365.25 * 86_400_000);
  // Bursts ride on top of the noise: contracts keep head-room for them.
  const burstHeadroom = p.bursts.perDay > 0 ? p.bursts.factor[1] : 1;

  const drafts = classes.map((cls, i) => {
    const profile: ProfileKind = cls === 'industrial' ? (rng.chance(0.5) ? 'industrialTwoShift' : 'industrialThreeShift') : cls;
    const meanW = (logUniform(rng, f.dailyKwh[cls]) * 1000) / 24;
    const hourShift = cls === 'residential' ? rng.range(-0.75, 0.75) : cls === 'commercial' ? rng.range(-0.5, 0.5) : 0;
    const pvKwp = pvSet.has(i) ? Math.round(draw(rng, cls === 'commercial' ? f.pvKwp.commercial : f.pvKwp.residential) * 10) / 10 : 0;
    // A meter installed 1–10 years ago at its average consumption.
    const ageDays = rng.range(365, 3650);
    const startImportWh = Math.round(meanW * 24 * ageDays);
    const startExportWh = pvKwp > 0 ? Math.round(pvKwp * 1000 * 3.5 * rng.range(30, 900)) : 0;
    const margin = draw(rng, f.contractMargin);
    const growthPerYear = draw(traitRng, p.growthPerYear);
    const traits = { profile, class: cls, meanW, hourShift, hvac: spread(p.hvacSpread), satScale: spread(p.weekendSpread), sunScale: spread(p.weekendSpread) };
    let peakW = 0;
    for (const off of tempOffsets) for (const sp of SIZING_POINTS) peakW = Math.max(peakW, expectedLoadW(traits, sp, p.seasonal, off));
    peakW *= 1 + Math.max(0, growthPerYear) * years;
    const contractKw = stepAtLeast(CONTRACT_STEPS_KW[cls], (peakW * margin * burstHeadroom) / 1000, 500);
    return { ...traits, cls, pvKwp, startImportWh, startExportWh, contractKw, peakW, growthPerYear };
  });

  // Large customers get their own transformer; the rest share street transformers.
  const large = rng.shuffle(drafts.flatMap((d, i) => (d.cls === 'industrial' || d.cls === 'critical' ? [i] : [])));
  const small = rng.shuffle(drafts.flatMap((d, i) => (d.cls === 'industrial' || d.cls === 'critical' ? [] : [i])));
  const chunks: number[][] = [];
  for (const [list, sizes] of [
    [small, f.metersPerTransformer],
    [large, f.metersPerIndustrialTransformer],
  ] as const) {
    const min = Math.max(1, Math.round(sizes[0]));
    for (let at = 0; at < list.length; ) {
      let size = Math.max(min, rng.int(min, Math.max(min, Math.round(sizes[1]))));
      // No runt transformer at the end: a remainder below the minimum joins the last one.
      if (list.length - (at + size) < min) size = list.length - at;
      chunks.push(list.slice(at, at + size));
      at += size;
    }
  }

  const transformerOf = new Array<number>(n).fill(0);
  chunks.forEach((chunk, t) => {
    for (const i of chunk) transformerOf[i] = t;
  });
  const tid = (t: number) => `${f.prefixes.transformer}${pad(t + 1, 4)}`;
  const fid = (t: number) => `${f.prefixes.feeder}${pad(Math.floor((t * f.feeders) / chunks.length) + 1, 2)}`;

  const meters: MeterModel[] = drafts.map((d, i) => {
    const t = transformerOf[i] ?? 0;
    const interval = intervals[i] ?? 15;
    return {
      index: i,
      meterId: `${f.prefixes.meter}${pad(i + 1, f.idDigits)}`,
      customerId: `${f.prefixes.customer}${pad(i + 1, f.idDigits)}`,
      class: d.cls,
      tariff: f.tariffs[d.cls],
      contractKw: d.contractKw,
      feederId: fid(t),
      transformerId: tid(t),
      hasPv: d.pvKwp > 0,
      intervalMinutes: interval,
      profile: d.profile,
      meanW: d.meanW,
      hourShift: d.hourShift,
      pvKwp: d.pvKwp,
      startImportWh: d.startImportWh,
      startExportWh: d.startExportWh,
      threePhase: d.cls !== 'residential',
      peakW: d.peakW,
      hvac: d.hvac,
      satScale: d.satScale,
      sunScale: d.sunScale,
      growthPerYear: d.growthPerYear,
    };
  });

  // The engine clips noise at 3 sigma, so one customer's load never exceeds `worst` times its noise-free value.
  const worst = Math.exp(3 * (p.noise + p.dailyNoise + p.occupancy)) * burstHeadroom;
  const groups: TransformerGroup[] = chunks.map((chunk, t) => {
    const members = chunk
      .map((i) => meters[i])
      .filter((m): m is MeterModel => m !== undefined)
      .sort((a, b) => a.index - b.index);
    let peakW = 0;
    for (const off of tempOffsets) {
      for (const sp of SIZING_POINTS) {
        let sum = 0;
        for (const m of members) sum += expectedLoadW(m, sp, p.seasonal, off) * (1 + Math.max(0, m.growthPerYear) * years);
        peakW = Math.max(peakW, sum);
      }
    }
    // Head-room for noise that does not average out on small groups; a lone customer gets all of it.
    const needKva = (peakW * (1 + (worst - 1) / Math.sqrt(members.length))) / 1000 / draw(rng, f.peakUtilization);
    const transformer: TransformerRecord = { transformerId: tid(t), feederId: fid(t), ratingKva: stepAtLeast(STANDARD_KVA, needKva, 1000) };
    return { transformer, meters: members, peakW };
  });

  const customers: FleetCustomer[] = meters.map((m) => ({
    meterId: m.meterId,
    customerId: m.customerId,
    class: m.class,
    tariff: m.tariff,
    contractKw: m.contractKw,
    feederId: m.feederId,
    transformerId: m.transformerId,
    hasPv: m.hasPv,
    intervalMinutes: m.intervalMinutes,
  }));
  return { customers, transformers: groups.map((g) => g.transformer), meters, groups };
}
