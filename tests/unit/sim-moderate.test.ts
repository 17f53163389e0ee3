import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Simulation, type LedgerRow } from '../../simulators/engine.js';
import { generateFleet } from '../../simulators/fleet.js';
import { highUsageHour, planScenario } from '../../simulators/plan.js';
import { calendarAt } from '../../simulators/profiles.js';
import { loadScenario, ScenarioError } from '../../simulators/scenario.js';
import { INTERVAL_SCORED, MODERATE_ANOMALIES, type TruthRecord } from '../../simulators/truth.js';
import { WeatherSeries } from '../../simulators/weather.js';

const H = 3_600_000;
const ZONE = 'Europe/Madrid';
/** Wednesday 11 March 2026 is a holiday in this scenario. */
const HOLIDAY = '2026-03-11';

const base = {
  name: 'moderate-test',
  seed: 5,
  timezone: ZONE,
  from: '2026-03-02T00:00:00Z',
  to: '+16d',
  calendar: { region: 'test', holidays: [HOLIDAY] },
  fleet: {
    meters: 80,
    feeders: 2,
    metersPerTransformer: [6, 10],
    pvShare: 0,
    classMix: { residential: 0.2, commercial: 0.5, industrial: 0.1, critical: 0.2 },
    intervalMix: { '15': 0.5, '60': 0.5 },
  },
  profile: {
    weather: { sigmaC: 3, persistence: 0.8 },
    hvacSpread: 0.4,
    tailDf: 4,
    bursts: { perDay: 1, factor: [1.15, 1.4], steps: [1, 2] },
    weekendSpread: 0.2,
    occupancy: 0.08,
    growthPerYear: [0, 0.1],
  },
};
const injected = {
  ...base,
  anomalies: {
    window: { start: '2d', end: '1d' },
    highUsage: { count: 8 },
    drop: { count: 3, moderateShare: 1 },
    levelShift: { count: 2, adoptDays: 5 },
    stuck: { count: 3 },
    placeholder: { count: 3 },
    lowDay: { count: 4 },
    shape: { count: 3 },
  },
};

function run(doc: Record<string, unknown>) {
  const s = loadScenario(doc);
  const fleet = generateFleet(s);
  const ledger = new Map<string, LedgerRow[]>();
  const sim = new Simulation(fleet, s, { onLedger: (r) => ledger.set(r.meterId, [...(ledger.get(r.meterId) ?? []), r]) });
  const h = createHash('sha256');
  for (const m of sim.messages()) h.update(`${m.topic}\n${m.payload}\n`);
  /** Energy of each interval of a meter ending in (from, to], by end time. */
  const energies = (meterId: string, from: number, to: number): Array<{ ts: number; wh: number }> => {
    const rows = ledger.get(meterId) ?? [];
    const out: Array<{ ts: number; wh: number }> = [];
    for (let i = 1; i < rows.length; i++) {
      const a = rows[i - 1];
      const b = rows[i];
      if (a && b && b.ts > from && b.ts <= to) out.push({ ts: b.ts, wh: b.importWh - a.importWh });
    }
    return out;
  };
  const total = (meterId: string, from: number, to: number) => energies(meterId, from, to).reduce((n, e) => n + e.wh, 0);
  return { s, fleet, truth: sim.plan.truth, sha: h.digest('hex'), energies, total };
}

const r = run(injected);
const clean = run(base);
const of = (type: string): TruthRecord[] => r.truth.filter((t) => t.type === type);
const iv = (t: TruthRecord) => (t.intervalMinutes ?? 0) * 60_000;
const id = (t: TruthRecord) => t.meterId ?? '';

describe('moderate injections: what the meters do matches the truth', () => {
  it('records every moderate type, magnitude moderate, with the meter interval and spans aligned to it', () => {
    expect(new Set(r.truth.map((t) => t.type))).toEqual(new Set([...MODERATE_ANOMALIES, 'drop']));
    for (const t of r.truth) {
      expect(t.magnitude).toBe('moderate');
      expect([15, 60]).toContain(t.intervalMinutes);
      for (const [a, b] of t.spans ?? [[t.startMs, t.endMs]]) {
        expect([a % iv(t), b % iv(t)]).toEqual([0, 0]);
        expect(a).toBeGreaterThanOrEqual(t.startMs);
        expect(b).toBeLessThanOrEqual(t.endMs);
      }
    }
  });

  it('the clean twin has the same fleet and, away from injections, the same energy', () => {
    expect(clean.fleet).toEqual(r.fleet);
    const touched = new Set(r.truth.map(id));
    const untouched = r.fleet.meters.filter((m) => !touched.has(m.meterId)).slice(0, 5);
    for (const m of untouched) expect(r.energies(m.meterId, 0, Infinity)).toEqual(clean.energies(m.meterId, 0, Infinity));
  });

  it('placeholder: every interval of the span reads exactly the filler (whPerHour for an hour)', () => {
    for (const t of of('placeholder')) {
      const wh = Number(t.params.wh);
      expect(wh).toBe((Number(t.params.whPerHour) * (t.intervalMinutes ?? 0)) / 60);
      const e = r.energies(id(t), t.startMs, t.endMs);
      expect(e).toHaveLength((t.endMs - t.startMs) / iv(t));
      expect(new Set(e.map((x) => x.wh))).toEqual(new Set([wh]));
    }
  });

  it('stuck: the same non-zero value interval after interval', () => {
    for (const t of of('stuck')) {
      const e = r.energies(id(t), t.startMs, t.endMs);
      expect(e.length).toBe((t.endMs - t.startMs) / iv(t));
      expect(new Set(e.map((x) => x.wh))).toEqual(new Set([Number(t.params.wh)]));
      expect(Number(t.params.wh)).toBeGreaterThan(0);
    }
  });

  it('lowDay: a working day that is not a holiday, its total at the asked share of the clean day', () => {
    for (const t of of('lowDay')) {
      const cal = calendarAt(t.startMs + H, ZONE);
      expect(cal.weekday).toBeLessThanOrEqual(5);
      expect(cal.dayKey).not.toBe(Number(HOLIDAY.replaceAll('-', '')));
      expect(calendarAt(t.startMs, ZONE).hour).toBe(0);
      const share = Number(t.params.share);
      expect(share).toBeGreaterThanOrEqual(0.2);
      expect(share).toBeLessThanOrEqual(0.5);
      const ratio = r.total(id(t), t.startMs, t.endMs) / clean.total(id(t), t.startMs, t.endMs);
      expect(Math.abs(ratio - share)).toBeLessThan(0.005);
    }
  });

  it('drop (moderate): 30-70 % below the clean run over the span', () => {
    for (const t of of('drop')) {
      const ratio = r.total(id(t), t.startMs, t.endMs) / clean.total(id(t), t.startMs, t.endMs);
      expect(Math.abs(ratio - (1 - Number(t.params.bypass)))).toBeLessThan(0.005);
      expect(Number(t.params.bypass)).toBeGreaterThanOrEqual(0.3);
      expect(Number(t.params.bypass)).toBeLessThanOrEqual(0.7);
    }
  });

  it('highUsage: factor x the clean run inside the spans, the clean run (to the watt-hour) outside them', () => {
    expect(new Set(of('highUsage').map((t) => t.variant))).toEqual(new Set(['allDay', 'nights', 'nightShift']));
    for (const t of of('highUsage')) {
      const spans = t.spans ?? [[t.startMs, t.endMs]];
      const inSpan = spans.reduce((n, [a, b]) => n + r.total(id(t), a, b), 0);
      const cleanIn = spans.reduce((n, [a, b]) => n + clean.total(id(t), a, b), 0);
      expect(Math.abs(inSpan / cleanIn - Number(t.params.factor))).toBeLessThan(0.01);
      const inj = r.energies(id(t), t.startMs, t.endMs);
      const cl = clean.energies(id(t), t.startMs, t.endMs);
      inj.forEach((e, k) => {
        const start = e.ts - iv(t);
        const touched = spans.some(([a, b]) => start >= a && start < b);
        if (!touched) expect(Math.abs(e.wh - (cl[k]?.wh ?? 0))).toBeLessThanOrEqual(1);
        // A variant's spans cover exactly its hours (nights: 20-07 and whole weekends and holidays).
        const c = calendarAt(start + iv(t) / 2, ZONE);
        const holiday = c.dayKey === Number(HOLIDAY.replaceAll('-', ''));
        expect(touched).toBe(
          highUsageHour(t.variant === 'nights' || t.variant === 'nightShift' ? t.variant : 'allDay', Math.floor(c.hour), c.weekday, holiday),
        );
      });
      expect(spans[0]?.[0]).toBe(t.startMs);
      expect(spans[spans.length - 1]?.[1]).toBe(t.endMs);
    }
  });

  it('levelShift: the step persists to the end of the run; the truth span ends at adoption', () => {
    for (const t of of('levelShift')) {
      expect(t.endMs).toBe(Math.min(t.startMs + 5 * 86_400_000, r.s.toMs));
      const after = r.total(id(t), t.startMs, r.s.toMs) / clean.total(id(t), t.startMs, r.s.toMs);
      expect(Math.abs(after - Number(t.params.factor))).toBeLessThan(0.005);
      expect(t.variant).toBe(Number(t.params.factor) > 1 ? 'up' : 'down');
    }
  });

  it('shape: whole local days, the profile moved by whole hours, the daily total close to normal', () => {
    for (const t of of('shape')) {
      expect(calendarAt(t.startMs, ZONE).hour).toBe(0);
      const shift = Number(t.params.shiftHours);
      expect(Math.abs(shift)).toBeGreaterThanOrEqual(3);
      expect(Math.abs(shift)).toBeLessThanOrEqual(8);
      const ratio = r.total(id(t), t.startMs, t.endMs) / clean.total(id(t), t.startMs, t.endMs);
      expect(Math.abs(ratio - 1)).toBeLessThan(0.15);
      // The hour-by-hour profile is not the clean one.
      const inj = r.energies(id(t), t.startMs, t.endMs).map((e) => e.wh);
      const cl = clean.energies(id(t), t.startMs, t.endMs).map((e) => e.wh);
      const moved = inj.reduce((n, x, k) => n + Math.abs(x - (cl[k] ?? 0)), 0) / cl.reduce((n, x) => n + x, 0);
      expect(moved).toBeGreaterThan(0.2);
    }
  });
});

describe('several moderate injections per meter', () => {
  const many = run({ ...injected, anomalies: { ...injected.anomalies, moderatePerMeter: 3, highUsage: { count: 30 }, lowDay: { count: 12 } } });

  it('up to moderatePerMeter runs on a meter, at least 2 days apart; a level shift meter carries nothing else', () => {
    const byMeter = new Map<string, TruthRecord[]>();
    for (const t of many.truth) byMeter.set(id(t), [...(byMeter.get(id(t)) ?? []), t]);
    const most = Math.max(...[...byMeter.values()].map((l) => l.length));
    expect(most).toBeGreaterThanOrEqual(2);
    expect(most).toBeLessThanOrEqual(3);
    for (const list of byMeter.values()) {
      const sorted = [...list].sort((x, y) => x.startMs - y.startMs);
      for (let k = 1; k < sorted.length; k++) expect((sorted[k]?.startMs ?? 0) - (sorted[k - 1]?.endMs ?? 0)).toBeGreaterThanOrEqual(2 * 86_400_000);
      if (list.some((t) => t.type === 'levelShift')) expect(list).toHaveLength(1);
    }
  });
});

describe('realism', () => {
  it('same scenario and seed → the same messages; another seed → others', () => {
    expect(run(injected).sha).toBe(r.sha);
    expect(run({ ...injected, seed: 6 }).sha).not.toBe(r.sha);
  });

  it('a holiday runs the Sunday profile: commercial meters use far less than on the Wednesday before', () => {
    const holiday = Date.parse('2026-03-10T23:00:00Z');
    const weekBefore = holiday - 7 * 86_400_000;
    const commercial = clean.fleet.meters.filter((m) => m.class === 'commercial');
    const ratio =
      commercial.reduce((n, m) => n + clean.total(m.meterId, holiday, holiday + 86_400_000), 0) /
      commercial.reduce((n, m) => n + clean.total(m.meterId, weekBefore, weekBefore + 86_400_000), 0);
    expect(ratio).toBeLessThan(0.6);
  });

  it('weather: daily anomalies persist from day to day, with the asked spread, clipped at 2.5 sd', () => {
    const from = Date.parse('2026-01-01T00:00:00Z');
    const w = new WeatherSeries(9, from, from + 3 * 365 * 86_400_000, { sigmaC: 3.5, persistence: 0.8 });
    const xs = Array.from({ length: 3 * 365 }, (_, d) => w.anomalyAt(from + (d + 0.5) * 86_400_000));
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
    const lag1 = xs.slice(1).reduce((a, x, i) => a + (x - mean) * ((xs[i] ?? 0) - mean), 0) / (xs.length - 1) / sd ** 2;
    expect(sd).toBeGreaterThan(2.8);
    expect(sd).toBeLessThan(4.2);
    expect(lag1).toBeGreaterThan(0.7);
    expect(Math.max(...xs.map(Math.abs))).toBeLessThanOrEqual(2.5 * 3.5);
    expect(new WeatherSeries(9, from, from + 86_400_000, { sigmaC: 0, persistence: 0.8 }).anomalyAt(from + H)).toBe(0);
  });

  it('contracts keep head-room for the weather and bursts: noise-free extreme peak x margin x burst factor', () => {
    for (const m of r.fleet.meters) expect(m.contractKw * 1000).toBeGreaterThanOrEqual(m.peakW * 2.1 * 1.4);
  });

  it('bad realism settings fail with their path', () => {
    expect(() => loadScenario({ ...base, profile: { tailDf: 2 } })).toThrow(
      new ScenarioError('profile.tailDf: 0 (Gaussian) or at least 3 (finite variance), got 2'),
    );
    expect(() => loadScenario({ ...base, calendar: { region: 'x', holidays: ['2026-3-1'] } })).toThrow(/calendar\.holidays\.0/);
  });
});

describe('shipped scenarios', () => {
  /** Share of all meter intervals inside an interval-scored injection span. */
  const anomalousShare = (path: string) => {
    const s = loadScenario(path);
    const fleet = generateFleet(s);
    const { truth } = planScenario(fleet, s);
    const all = fleet.meters.reduce((n, m) => n + (s.toMs - s.fromMs) / (m.intervalMinutes * 60_000), 0);
    const labelled = truth
      .filter((t) => t.kind === 'anomaly' && INTERVAL_SCORED.has(t.type))
      .reduce((n, t) => n + (t.spans ?? [[t.startMs, t.endMs]]).reduce((k, [a, b]) => k + (b - a) / iv(t), 0), 0);
    return { share: labelled / all, truth, s, fleet };
  };

  it('realistic.yaml: mostly buildings, hourly and 15-minute, 2-3 % of intervals anomalous, injections after 4 weeks', () => {
    const { share, truth, s, fleet } = anomalousShare('simulators/scenarios/realistic.yaml');
    expect(share).toBeGreaterThan(0.02);
    expect(share).toBeLessThan(0.03);
    expect(fleet.meters.filter((m) => m.class === 'residential').length / fleet.meters.length).toBe(0.2);
    expect(new Set(fleet.meters.map((m) => m.intervalMinutes))).toEqual(new Set([15, 60]));
    expect(Math.min(...truth.filter((t) => t.kind === 'anomaly').map((t) => t.startMs))).toBeGreaterThanOrEqual(s.fromMs + 28 * 86_400_000);
    expect(new Set(truth.filter((t) => t.magnitude === 'moderate').map((t) => t.type))).toEqual(new Set([...MODERATE_ANOMALIES, 'drop']));
  });

  it('ci.yaml: the clear and subtle injections as before, plus moderate ones of every type', () => {
    const { truth } = anomalousShare('simulators/scenarios/ci.yaml');
    const count = (type: string, magnitude: string) => truth.filter((t) => t.type === type && t.magnitude === magnitude).length;
    expect([count('drop', 'clear'), count('drop', 'subtle'), count('drop', 'moderate')]).toEqual([6, 2, 4]);
    expect([count('spike', 'clear'), count('spike', 'subtle')]).toEqual([6, 2]);
    expect(MODERATE_ANOMALIES.map((t) => count(t, 'moderate'))).toEqual([8, 3, 5, 5, 5, 5]);
  });
});
