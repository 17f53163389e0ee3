import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { planDemandResponse } from '../../simulators/demand-response.js';
import { Simulation, type LedgerRow } from '../../simulators/engine.js';
import { generateFleet } from '../../simulators/fleet.js';
import { loadScenario, ScenarioError } from '../../simulators/scenario.js';

const NOW = Date.parse('2026-05-01T00:00:00Z');
const BASE = {
  name: 'dr-unit',
  seed: 18,
  timezone: 'Europe/Madrid',
  from: '2026-03-02T00:00:00Z',
  to: '+3d',
  batch: 6,
  fleet: {
    meters: 24,
    feeders: 2,
    metersPerTransformer: [4, 8],
    classMix: { residential: 0.5, commercial: 0.25, industrial: 0.125, critical: 0.125 },
    intervalMix: { '15': 0.5, '30': 0.25, '60': 0.25 },
    pvShare: 0.3,
  },
  anomalies: { window: { start: '6h', end: '2h' }, spike: { count: 1 }, silent: { count: 1 } },
  transport: { duplicates: { count: 5 }, outOfOrder: { count: 3 } },
};
/** 13:00-15:00 Madrid on 3 March, half of everyone called, 60 % of them cut 30-50 %, half the cut back in the hour after; a second event nobody answers. */
const EVENTS = [
  { start: '36h', end: '+38h', participants: { share: 0.5 }, cut: [0.3, 0.5], responders: 0.6, rebound: 0.5 },
  {
    id: 'ignored',
    start: '2026-03-04T17:00:00Z',
    end: '2026-03-04T19:30:00Z',
    participants: { classes: ['commercial', 'industrial'] },
    cut: [0.4, 0.4],
    responders: 0,
  },
];

function run(doc: Record<string, unknown>) {
  const s = loadScenario(doc, {}, { now: NOW });
  const fleet = generateFleet(s);
  const ledger = new Map<string, LedgerRow[]>();
  const sim = new Simulation(fleet, s, {
    onLedger: (r) => {
      const list = ledger.get(r.meterId) ?? [];
      list.push(r);
      ledger.set(r.meterId, list);
    },
  });
  const byMeter = new Map<string, string[]>();
  const h = createHash('sha256');
  for (const m of sim.messages()) {
    h.update(`${m.topic}\n${m.payload}\n`);
    for (const x of [JSON.parse(m.payload)].flat() as { meterId?: string }[]) {
      if (typeof x.meterId !== 'string') continue;
      const list = byMeter.get(x.meterId) ?? [];
      list.push(JSON.stringify(x));
      byMeter.set(x.meterId, list);
    }
  }
  const reg = (meterId: string, ts: number): number => {
    const row = ledger.get(meterId)?.find((r) => r.ts === ts);
    if (row === undefined) throw new Error(`no ledger row of ${meterId} at ${new Date(ts).toISOString()}`);
    return row.importWh;
  };
  return { s, fleet, sim, ledger, byMeter, reg, sha: h.digest('hex'), truth: sim.drTruth() };
}

describe('demand response in the simulator', () => {
  const clean = run(BASE);
  const dr = run({ ...BASE, demandResponse: { events: EVENTS } });

  it('an empty event list changes nothing', () => {
    expect(run({ ...BASE, demandResponse: { events: [] } }).sha).toBe(clean.sha);
    expect(clean.sim.plan.dr).toEqual([]);
  });

  it('plans from the seed: exact counts, the class filter, a stream of its own', () => {
    const [a, b] = dr.sim.plan.dr;
    if (a === undefined || b === undefined) throw new Error('two events expected');
    expect([a.id, a.startMs, a.endMs, a.reboundEndMs]).toEqual([
      'dr-01',
      Date.parse('2026-03-03T12:00:00Z'),
      Date.parse('2026-03-03T14:00:00Z'),
      Date.parse('2026-03-03T15:00:00Z'),
    ]);
    expect(a.participants).toHaveLength(12);
    expect(a.participants.filter((p) => p.responded)).toHaveLength(7);
    for (const p of a.participants) {
      if (p.responded) expect(p.cut >= 0.3 && p.cut < 0.5).toBe(true);
      else expect(p.cut).toBe(0);
    }
    expect([b.id, b.reboundEndMs]).toEqual(['ignored', b.endMs]);
    expect(b.participants.map((p) => dr.fleet.meters[p.meter]?.class).sort()).toEqual([...Array(6).fill('commercial'), ...Array(3).fill('industrial')]);
    expect(b.participants.every((p) => !p.responded)).toBe(true);
    // Same seed, same plan; the anomaly plan is the clean run's.
    expect(planDemandResponse(dr.fleet, dr.s)).toEqual(dr.sim.plan.dr);
    expect(dr.sim.plan.truth).toEqual(clean.sim.plan.truth);
    const other = run({ ...BASE, seed: 19, demandResponse: { events: EVENTS } });
    expect(other.sim.plan.dr[0]?.participants.map((p) => p.meter)).not.toEqual(a.participants.map((p) => p.meter));
  });

  it('moves only the responders, only from the event on; everyone else registers exactly as without it', () => {
    const [a] = dr.sim.plan.dr;
    if (a === undefined) throw new Error('no event');
    const responders = new Set(a.participants.filter((p) => p.responded).map((p) => dr.fleet.meters[p.meter]?.meterId));
    const withResponders = new Set([...responders].map((id) => dr.fleet.meters.find((m) => m.meterId === id)?.transformerId));
    for (const m of dr.fleet.meters) {
      const upTo = (rows: LedgerRow[] | undefined) => (rows ?? []).filter((r) => r.ts <= a.startMs);
      expect(upTo(dr.ledger.get(m.meterId))).toEqual(upTo(clean.ledger.get(m.meterId)));
      if (responders.has(m.meterId)) {
        expect(dr.reg(m.meterId, a.endMs)).toBeLessThan(clean.reg(m.meterId, a.endMs) + (m.hasPv ? 1 : 0));
        continue;
      }
      expect({ meter: m.meterId, ledger: dr.ledger.get(m.meterId) }).toEqual({ meter: m.meterId, ledger: clean.ledger.get(m.meterId) });
      // A lighter transformer lifts its meters' voltage a little; elsewhere every reading is the same, byte for byte.
      if (!withResponders.has(m.transformerId))
        expect({ meter: m.meterId, readings: dr.byMeter.get(m.meterId) }).toEqual({ meter: m.meterId, readings: clean.byMeter.get(m.meterId) });
    }
    expect(withResponders.size).toBeLessThan(new Set(dr.fleet.meters.map((m) => m.transformerId)).size);
  });

  it('books each participant: actual = its register over the window, counterfactual = the run without the event', () => {
    const [a, b] = dr.truth;
    if (a === undefined || b === undefined) throw new Error('two truth records expected');
    expect([a.complete, a.participantCount, a.responderCount, b.responderCount, b.totals.reductionWh]).toEqual([true, 12, 7, 0, 0]);
    for (const e of [a, b]) {
      for (const p of e.participants) {
        const iv = p.intervalMinutes * 60_000;
        // The second event ends at half past: its 60-minute meters have no register there.
        if (e.startMs % iv !== 0 || e.endMs % iv !== 0) {
          expect([e.id, p.intervalMinutes]).toEqual(['ignored', 60]);
          continue;
        }
        const actual = dr.reg(p.meterId, e.endMs) - dr.reg(p.meterId, e.startMs);
        const counterfactual = clean.reg(p.meterId, e.endMs) - clean.reg(p.meterId, e.startMs);
        expect({ meter: p.meterId, actual: p.actualWh }).toEqual({ meter: p.meterId, actual });
        // Whole watt-hours on the register: the counterfactual's carry is under 1 Wh either side.
        expect(Math.abs(p.counterfactualWh - counterfactual)).toBeLessThanOrEqual(1.05);
        expect(p.reductionWh).toBeCloseTo(p.counterfactualWh - p.actualWh, 1);
        if (!p.responded) expect([p.reductionWh, p.reboundWh]).toEqual([0, 0]);
        // Without PV the import is the load: the reduction is the cut share of the counterfactual.
        if (p.responded && !p.hasPv) expect(Math.abs(p.reductionWh - p.cut * p.counterfactualWh)).toBeLessThanOrEqual(1.05);
        if (p.responded) {
          expect(p.reductionWh).toBeGreaterThan(0);
          // Half of the cut comes back in the hour after (flat on top of the load; PV can hide some of it).
          if (!p.hasPv) expect(p.reboundWh).toBeCloseTo(0.5 * p.reductionWh, 0);
          const extra = dr.reg(p.meterId, e.reboundEndMs) - dr.reg(p.meterId, e.endMs) - (clean.reg(p.meterId, e.reboundEndMs) - clean.reg(p.meterId, e.endMs));
          expect(Math.abs(extra - p.reboundWh)).toBeLessThanOrEqual(2.05);
        }
      }
    }
    expect(a.totals.reductionWh).toBeCloseTo(
      a.participants.reduce((s, p) => s + p.reductionWh, 0),
      0,
    );
  });

  it.each([
    [{ start: '36.1h', end: '+38h' }, 'demandResponse.events.0: start and end must be on the 15-minute grid'],
    [{ start: '36h', end: '+36h' }, 'demandResponse.events.0: end (2026-03-03T12:00:00.000Z) must be after start'],
    [{ start: '2026-02-01T00:00:00Z', end: '+38h' }, "is outside the scenario's range"],
    [{ cut: [0.5, 1.2] }, 'demandResponse.events.0.cut: expected 0 ≤ lo ≤ hi ≤ 1'],
    [{ cut: [0.5, 0.2] }, 'demandResponse.events.0.cut: expected 0 ≤ lo ≤ hi ≤ 1'],
    [{ reboundHours: 0.1 }, 'demandResponse.events.0.reboundHours: a whole number of quarter hours'],
    [{ participants: { share: 0.01 } }, 'demandResponse.events.0.participants: selects no customer'],
    [{ participants: { customers: ['C-999999'] } }, 'demandResponse.events.0.participants: selects no customer'],
    [{ participants: { classes: ['household'] } }, 'demandResponse.events.0.participants.classes.0'],
    [{ responders: 1.5 }, 'demandResponse.events.0.responders'],
    [{ share: 0.5 }, 'demandResponse.events.0.share: unknown key'],
    [{ start: 'soon' }, 'demandResponse.events.0: "soon" is not a duration'],
  ])('a bad event fails naming its key: %j', (change, message) => {
    const doc = { ...BASE, demandResponse: { events: [{ ...EVENTS[0], ...change }] } };
    expect(() => run(doc)).toThrow(ScenarioError);
    expect(() => run(doc)).toThrow(message);
  });

  it('refuses overlapping events and repeated ids', () => {
    const second = { ...EVENTS[0], start: '38.5h', end: '+40h' };
    // The first event's rebound runs to 39 h.
    expect(() => run({ ...BASE, demandResponse: { events: [EVENTS[0], second] } })).toThrow('dr-01 and dr-02 overlap (rebound included)');
    expect(run({ ...BASE, demandResponse: { events: [EVENTS[0], { ...second, start: '39h' }] } }).truth).toHaveLength(2);
    expect(() => run({ ...BASE, demandResponse: { events: [{ ...EVENTS[1] }, { ...EVENTS[1], start: '12h', end: '+13h' }] } })).toThrow(
      'id "ignored" is used twice',
    );
  });
});
