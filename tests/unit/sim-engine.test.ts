import { createHash } from 'node:crypto';
import { DateTime } from 'luxon';
import { Compile } from 'typebox/compile';
import { describe, expect, it } from 'vitest';
import { MeterEventPayload, ReadingPayload } from '../../src/contracts/reading.js';
import { Simulation, type LedgerRow, type SimMessage } from '../../simulators/engine.js';
import { generateFleet } from '../../simulators/fleet.js';
import { loadScenario, type ResolvedScenario } from '../../simulators/scenario.js';
import { isoSeconds } from '../../simulators/time-spec.js';
import { INJECTED_ANOMALIES, TRANSPORT_FAULTS, type TruthRecord } from '../../simulators/truth.js';

interface Parsed {
  meterId: string;
  ts: number;
  seq: number;
  importWh: number;
  exportWh: number;
  powerW: number;
  voltageV: number;
  /** Index of the message that carried it. */
  msg: number;
}

const readingContract = Compile(ReadingPayload);

function run(s: ResolvedScenario, batch?: number) {
  const fleet = generateFleet(s);
  const ledger: LedgerRow[] = [];
  const sim = new Simulation(fleet, s, { batch, onLedger: (r) => ledger.push(r) });
  const messages = [...sim.messages()];
  const readings: Parsed[] = [];
  /** Elements failing the reading contract: only the deliberately bad batch elements may. */
  let invalid = 0;
  messages.forEach((m, i) => {
    if (m.kind === 'event' || m.kind === 'malformed') return;
    const v: unknown = JSON.parse(m.payload);
    const items: unknown[] = Array.isArray(v) ? v : [v];
    for (const e of items) {
      if (!readingContract.Check(e) || typeof e.ts !== 'string') {
        invalid++;
        continue;
      }
      readings.push({
        meterId: e.meterId,
        ts: Date.parse(e.ts),
        seq: e.seq ?? 0,
        importWh: e.importWh,
        exportWh: e.exportWh ?? 0,
        powerW: e.powerW ?? 0,
        voltageV: e.voltageV ?? 0,
        msg: i,
      });
    }
  });
  const byMeter = new Map<string, Map<number, Parsed>>();
  for (const r of readings) {
    const m = byMeter.get(r.meterId) ?? new Map<number, Parsed>();
    if (!m.has(r.ts)) m.set(r.ts, r);
    byMeter.set(r.meterId, m);
  }
  const sorted = (id: string) => [...(byMeter.get(id)?.values() ?? [])].sort((a, b) => a.ts - b.ts);
  const ledgerOf = (id: string) => ledger.filter((r) => r.meterId === id);
  return { s, fleet, sim, messages, ledger, readings, invalid, byMeter, sorted, ledgerOf, truth: sim.plan.truth };
}

function sha(messages: SimMessage[]): string {
  const h = createHash('sha256');
  for (const m of messages) h.update(`${m.topic}\n${m.payload}\n`);
  return h.digest('hex');
}

const NOW = Date.parse('2026-05-01T00:00:00Z');
const small = (overrides = {}) => loadScenario('simulators/scenarios/small.yaml', overrides, { now: NOW });
/** small.yaml with every injection switched off: the same fleet, loads and noise. */
const cleanSmall = () =>
  loadScenario(
    {
      ...Object.fromEntries(
        Object.entries(loadScenario('simulators/scenarios/small.yaml', {}, { now: NOW })).filter(([k]) => !['fromMs', 'toMs', 'intervals'].includes(k)),
      ),
      anomalies: Object.fromEntries(INJECTED_ANOMALIES.map((t) => [t, { count: 0 }])),
      transport: { duplicates: { count: 0 }, outOfOrder: { count: 0 }, lateBatches: { count: 0 }, malformed: { count: 0 }, clockSkew: { count: 0 } },
    },
    {},
    { now: NOW },
  );

/** Energy registered by a meter over (from, to], from its readings. */
function delta(rs: Parsed[], from: number, to: number, field: 'importWh' | 'exportWh' = 'importWh'): number {
  const a = rs.find((r) => r.ts === from);
  const b = rs.find((r) => r.ts === to);
  if (!a || !b) throw new Error(`no reading at ${new Date(a ? to : from).toISOString()}`);
  return b[field] - a[field];
}

describe('determinism', () => {
  it('same scenario and seed → byte-identical messages; another seed or batching → different', () => {
    const a = sha(run(small()).messages);
    expect(sha(run(small()).messages)).toBe(a);
    expect(sha(run(small({ seed: 43 })).messages)).not.toBe(a);
    expect(sha(run(small(), 10).messages)).not.toBe(a);
    expect(sha(run(small(), 10).messages)).toBe(sha(run(small(), 10).messages));
  });
});

describe('a plain fleet', () => {
  const s = loadScenario(
    { seed: 5, from: '2026-06-01T00:00:00Z', to: '+2d', fleet: { meters: 30, intervalMix: { '15': 0.5, '30': 0.25, '60': 0.25 }, pvShare: 0.3 } },
    {},
    { now: NOW },
  );
  const r = run(s);

  it('sends one reading per meter per interval end, from the start to the end inclusive', () => {
    for (const m of r.fleet.meters) {
      const expected = (2 * 24 * 60) / m.intervalMinutes + 1;
      expect(r.sorted(m.meterId).length).toBe(expected);
    }
    expect(r.readings.length).toBe(r.messages.length);
    expect(r.invalid).toBe(0);
    expect(r.messages.every((m) => m.kind === 'reading' && m.topic === `meters/${m.meterId}/readings`)).toBe(true);
  });

  it('keeps registers whole watt-hours that never decrease, and seq counting up', () => {
    for (const m of r.fleet.meters) {
      const rs = r.sorted(m.meterId);
      rs.forEach((x, i) => {
        expect(Number.isInteger(x.importWh) && Number.isInteger(x.exportWh)).toBe(true);
        expect(x.seq).toBe(i + 1);
        const prev = rs[i - 1];
        if (prev) {
          expect(x.importWh).toBeGreaterThanOrEqual(prev.importWh);
          expect(x.exportWh).toBeGreaterThanOrEqual(prev.exportWh);
        }
      });
    }
  });

  it('ledger = published registers, row for row, and its deltas sum to the published deltas', () => {
    expect(r.ledger.length).toBe(r.readings.length);
    for (const m of r.fleet.meters) {
      const rs = r.sorted(m.meterId);
      const led = r.ledgerOf(m.meterId);
      expect(led.map((l) => [l.ts, l.importWh, l.exportWh, l.published])).toEqual(rs.map((x) => [x.ts, x.importWh, x.exportWh, true]));
      const sumDeltas = rs.slice(1).reduce((acc, x, i) => acc + x.importWh - (rs[i]?.importWh ?? 0), 0);
      expect(sumDeltas).toBe((led[led.length - 1]?.importWh ?? 0) - (led[0]?.importWh ?? 0));
    }
  });

  it('PV meters export around midday and only they do', () => {
    for (const m of r.fleet.meters) {
      const exported = delta(r.sorted(m.meterId), s.fromMs, s.toMs, 'exportWh');
      if (m.hasPv) expect(exported).toBeGreaterThan(0);
      else expect(exported).toBe(0);
    }
  });

  it('voltage stays within ±7 % of 230 V', () => {
    for (const x of r.readings) expect(Math.abs(x.voltageV / 230 - 1)).toBeLessThanOrEqual(0.075);
  });
});

describe('load shape in the simulated data', () => {
  const s = loadScenario({ seed: 11, timezone: 'Europe/Madrid', from: '2026-02-02T00:00:00Z', to: '+7d', fleet: { meters: 60, pvShare: 0 } }, {}, { now: NOW });
  const r = run(s);
  /** Energy per local hour of day, summed over the week, for one class. */
  const byHour = (cls: string, weekdaysOnly: boolean) => {
    const hours = new Array<number>(24).fill(0);
    for (const m of r.fleet.meters.filter((x) => x.class === cls)) {
      const rs = r.sorted(m.meterId);
      for (let i = 1; i < rs.length; i++) {
        const cur = rs[i];
        const prev = rs[i - 1];
        if (!cur || !prev) continue;
        const local = DateTime.fromMillis(cur.ts - 1, { zone: s.timezone });
        if (weekdaysOnly && local.weekday > 5) continue;
        hours[local.hour] = (hours[local.hour] ?? 0) + cur.importWh - prev.importWh;
      }
    }
    return hours;
  };
  const sum = (xs: number[], from: number, to: number) => xs.slice(from, to).reduce((a, b) => a + b, 0);

  it('residential: evening energy > midday, morning > night', () => {
    const h = byHour('residential', false);
    expect(sum(h, 18, 22)).toBeGreaterThan(1.5 * sum(h, 11, 15));
    expect(sum(h, 7, 9)).toBeGreaterThan(1.5 * sum(h, 2, 4));
  });

  it('commercial: weekday office hours > nights', () => {
    const h = byHour('commercial', true);
    expect(sum(h, 9, 17)).toBeGreaterThan(2.5 * sum(h, 0, 8));
  });
});

describe('small.yaml: injected anomalies and transport faults', () => {
  const r = run(small());
  const clean = run(cleanSmall());
  const records = (type: string) => r.truth.filter((t) => t.type === type);
  const one = (type: string): TruthRecord => {
    const t = records(type)[0];
    if (!t) throw new Error(`no ${type} in truth`);
    return t;
  };
  const iv = (t: TruthRecord) => (r.fleet.meters.find((m) => m.meterId === t.meterId)?.intervalMinutes ?? 15) * 60_000;
  const intervalsOf = (t: TruthRecord) => Array.from({ length: (t.endMs - t.startMs) / iv(t) }, (_, k) => t.startMs + (k + 1) * iv(t));

  it('the clean run has the same fleet and base loads', () => {
    expect(clean.truth).toEqual([]);
    expect(clean.fleet).toEqual(r.fleet);
  });

  it('records every anomaly type and transport fault in the truth, with ISO and ms times', () => {
    expect(new Set(r.truth.filter((t) => t.kind === 'anomaly').map((t) => t.type))).toEqual(new Set(INJECTED_ANOMALIES));
    expect(new Set(r.truth.filter((t) => t.kind === 'transport').map((t) => t.type))).toEqual(new Set(TRANSPORT_FAULTS));
    for (const t of r.truth) {
      expect(Date.parse(t.start)).toBe(t.startMs);
      expect(Date.parse(t.end)).toBe(t.endMs);
      expect(t.endMs).toBeGreaterThanOrEqual(t.startMs);
    }
    expect(
      records('voltage')
        .map((t) => t.magnitude)
        .sort(),
    ).toEqual(['clear', 'subtle']);
  });

  it('keeps registers non-decreasing except at the one injected register reset', () => {
    const reset = one('registerReset');
    let decreases = 0;
    for (const m of r.fleet.meters) {
      const rs = r.sorted(m.meterId);
      for (let i = 1; i < rs.length; i++) {
        const cur = rs[i];
        const prev = rs[i - 1];
        if (!cur || !prev) continue;
        if (cur.importWh < prev.importWh) {
          decreases++;
          expect([m.meterId, prev.ts, cur.ts]).toEqual([reset.meterId, reset.startMs, reset.endMs]);
          expect(cur.importWh).toBeLessThan(5000);
          expect(cur.seq).toBe(1);
        }
      }
    }
    expect(decreases).toBe(1);
  });

  it("publishes the meter exchange work order before the new meter's first reading", () => {
    const reset = one('registerReset');
    const orders = r.messages.filter((m) => m.kind === 'event' && m.payload.includes('"meterExchange"'));
    const contract = Compile(MeterEventPayload);
    expect(orders.map((m) => [m.topic, m.ts, m.at])).toEqual([[`headend/meters/${reset.meterId}/exchange`, reset.startMs, reset.startMs]]);
    const order: unknown = JSON.parse(orders[0]?.payload ?? '{}');
    expect(contract.Check(order)).toBe(true);
    // install read = the truth's new start; removal read = the old meter's register (ledger) at the install time
    const removal = r.ledgerOf(reset.meterId ?? '').find((l) => l.ts === reset.startMs)?.importWh;
    expect(order).toEqual({
      meterId: reset.meterId,
      ts: isoSeconds(reset.startMs),
      event: 'meterExchange',
      installWh: reset.params.newStartWh,
      removalWh: removal,
      installExportWh: 0,
    });
    const first = r.sorted(reset.meterId ?? '').find((x) => x.ts === reset.endMs);
    expect(r.messages.indexOf(orders[0] ?? expect.fail('no order'))).toBeLessThan(first?.msg ?? -1);
  });

  it('ledger = the registers of every published reading; unpublished ends are marked', () => {
    const skew = one('clockSkew');
    for (const m of r.fleet.meters) {
      const rs = r.byMeter.get(m.meterId) ?? new Map<number, Parsed>();
      for (const l of r.ledgerOf(m.meterId)) {
        const x = rs.get(l.ts);
        if (l.published) expect([x?.importWh, x?.exportWh]).toEqual([l.importWh, l.exportWh]);
        else if (m.meterId !== skew.meterId) expect(x).toBeUndefined();
      }
    }
  });

  it('spike: every interval of the window reaches the spike power', () => {
    const t = one('spike');
    const rs = r.sorted(t.meterId ?? '');
    for (const end of intervalsOf(t)) {
      expect(delta(rs, end - iv(t), end)).toBeGreaterThanOrEqual(Math.floor((Number(t.params.powerW) * iv(t)) / 3_600_000) - 1);
    }
    expect(Number(t.params.powerW)).toBeGreaterThanOrEqual(2000);
  });

  it('drop: the register records (1 - bypass) of what the clean run consumed', () => {
    const t = one('drop');
    const got = delta(r.sorted(t.meterId ?? ''), t.startMs, t.endMs);
    const base = delta(clean.sorted(t.meterId ?? ''), t.startMs, t.endMs);
    expect(Math.abs(got - (1 - Number(t.params.bypass)) * base)).toBeLessThanOrEqual(intervalsOf(t).length + 2);
  });

  it('flatline: the whole reading freezes, then the register moves as in the clean run', () => {
    const t = one('flatline');
    const rs = r.sorted(t.meterId ?? '');
    const inside = rs.filter((x) => x.ts >= t.startMs && x.ts <= t.endMs);
    expect(new Set(inside.map((x) => `${x.importWh}/${x.powerW}/${x.voltageV}`)).size).toBe(1);
    const after = t.endMs + 4 * iv(t);
    expect(Math.abs(delta(rs, t.endMs, after) - delta(clean.sorted(t.meterId ?? ''), t.endMs, after))).toBeLessThanOrEqual(1);
  });

  it('reverseFlow: a non-PV meter exports `fraction` of its consumption', () => {
    const t = one('reverseFlow');
    const m = r.fleet.meters.find((x) => x.meterId === t.meterId);
    expect(m?.hasPv).toBe(false);
    const exported = delta(r.sorted(t.meterId ?? ''), t.startMs, t.endMs, 'exportWh');
    const consumed = delta(clean.sorted(t.meterId ?? ''), t.startMs, t.endMs);
    expect(Math.abs(exported - Number(t.params.fraction) * consumed)).toBeLessThanOrEqual(intervalsOf(t).length + 2);
  });

  it('voltage: clear injections leave ±10 %, subtle ones stay inside', () => {
    for (const t of records('voltage')) {
      const inside = r.sorted(t.meterId ?? '').filter((x) => x.ts > t.startMs && x.ts <= t.endMs);
      expect(inside.length).toBe(intervalsOf(t).length);
      for (const x of inside) {
        const off = Math.abs(x.voltageV / 230 - 1);
        if (t.magnitude === 'clear') expect(off).toBeGreaterThan(0.1);
        else expect(off).toBeLessThan(0.1);
      }
    }
  });

  it('silent: no reading in (start, end], then the meter reads again', () => {
    const t = one('silent');
    const rs = r.sorted(t.meterId ?? '');
    expect(rs.filter((x) => x.ts > t.startMs && x.ts <= t.endMs)).toEqual([]);
    expect(rs.some((x) => x.ts === t.endMs + iv(t))).toBe(true);
    expect(r.ledgerOf(t.meterId ?? '').filter((l) => !l.published).length).toBe(Number(t.params.missedReadings));
  });

  it('outage: last gasps, no readings and no consumption, power restored for every meter', () => {
    const t = one('outage');
    const events = r.messages.filter((m) => m.kind === 'event');
    const gasps = events.filter((m) => m.payload.includes('"lastGasp"'));
    const restored = events.filter((m) => m.payload.includes('"powerRestored"'));
    expect(gasps.length).toBe(Number(t.params.lastGasps));
    expect(restored.map((m) => m.meterId).sort()).toEqual([...t.meters].sort());
    for (const g of gasps) expect(g.ts > t.startMs && g.ts <= t.startMs + 30_000).toBe(true);
    for (const g of restored) expect(g.ts > t.endMs && g.ts <= t.endMs + 60_000).toBe(true);
    for (const id of t.meters) {
      const rs = r.sorted(id);
      expect(rs.filter((x) => x.ts > t.startMs && x.ts <= t.endMs)).toEqual([]);
      const led = r.ledgerOf(id).filter((l) => l.ts >= t.startMs && l.ts <= t.endMs);
      expect(new Set(led.map((l) => l.importWh)).size).toBe(1);
    }
    // Events go out in time order, before the readings of their step.
    const ats = r.messages.map((m) => m.at);
    expect(ats.every((a, i) => i === 0 || a >= (ats[i - 1] ?? 0))).toBe(true);
  });

  it('customerPeak: demand over the contract for the whole window', () => {
    const t = one('customerPeak');
    const rs = r.sorted(t.meterId ?? '');
    for (const end of intervalsOf(t)) {
      const wh = delta(rs, end - iv(t), end);
      expect(Math.abs(wh - (Number(t.params.powerW) * iv(t)) / 3_600_000)).toBeLessThanOrEqual(1);
      expect((wh * 3_600_000) / iv(t)).toBeGreaterThan(Number(t.params.contractKw) * 1000);
    }
  });

  it('feederOverload: the transformer carries the target load through the window', () => {
    const t = one('feederOverload');
    const total = t.meters.reduce((acc, id) => acc + delta(r.sorted(id), t.startMs, t.endMs), 0);
    const hours = (t.endMs - t.startMs) / 3_600_000;
    expect(total / hours / 1000).toBeGreaterThanOrEqual(Number(t.params.targetKw) * 0.99);
    expect(Number(t.params.targetKw)).toBeGreaterThan(Number(t.params.ratingKva));
  });

  it('duplicates: the same reading twice, the copy marked and later or equal in order', () => {
    for (const t of records('duplicate')) {
      const copies = r.readings.filter((x) => x.meterId === t.meterId && x.ts === t.startMs);
      expect(copies.length).toBe(2);
      const [a, b] = copies;
      expect(r.messages[b?.msg ?? 0]?.kind).toBe('duplicate');
      expect(r.messages[b?.msg ?? 0]?.payload).toBe(r.messages[a?.msg ?? 0]?.payload);
    }
  });

  it('out-of-order: the reading arrives after its successor', () => {
    for (const t of records('outOfOrder')) {
      const rs = r.byMeter.get(t.meterId ?? '');
      const held = rs?.get(t.startMs);
      const next = rs?.get(t.startMs + iv(t));
      expect(held && next && held.msg > next.msg).toBe(true);
    }
  });

  it('late batch: the concentrator sends its backlog at the end of the window, nothing before', () => {
    const t = one('lateBatch');
    const held = r.readings.filter((x) => t.meters.includes(x.meterId) && x.ts > t.startMs && x.ts <= t.endMs);
    expect(held.length).toBe(Number(t.params.heldReadings));
    for (const x of held) {
      const m = r.messages[x.msg];
      expect([m?.kind, m?.at]).toEqual(['backlog', t.endMs]);
    }
  });

  it('malformed: one rejected message or element per truth record', () => {
    const truth = records('malformed');
    expect(truth.length).toBe(14);
    expect(r.messages.reduce((n, m) => n + m.rejects, 0)).toBe(14);
    // Every other element of every reading message satisfies the reading contract.
    expect(r.invalid).toBe(truth.filter((t) => t.variant === 'badElementInBatch').length);
    expect(r.messages.filter((m) => m.kind === 'malformed').length).toBe(13);
    const oversize = r.messages.find((m) => m.kind === 'malformed' && m.payload.includes('"pad"'));
    expect(oversize?.payload.length).toBe(300_000);
  });

  it('clock skew: the meter stamps its readings off by the skew', () => {
    const t = one('clockSkew');
    const skew = Number(t.params.skewSeconds) * 1000;
    const shifted = r.sorted(t.meterId ?? '').filter((x) => x.ts % 900_000 !== 0);
    expect(shifted.length).toBe(Number(t.params.readings));
    for (const x of shifted) expect((x.ts - skew) % iv(t)).toBe(0);
  });
});

describe('concentrator batches', () => {
  const K = 4;
  const r = run(small(), K);

  it('sends on-time readings as arrays of at most K on concentrators/{transformerId}/readings', () => {
    const batches = r.messages.filter((m) => m.kind === 'batch');
    expect(batches.length).toBeGreaterThan(0);
    expect(r.messages.filter((m) => m.kind === 'reading')).toEqual([]);
    for (const m of batches) {
      expect(m.topic).toBe(`concentrators/${m.meterId}/readings`);
      const items: Array<{ meterId: string }> = JSON.parse(m.payload);
      expect(items.length - m.rejects).toBe(m.readings);
      expect(m.readings).toBeLessThanOrEqual(K);
      const members = new Set(r.fleet.groups.find((g) => g.transformer.transformerId === m.meterId)?.meters.map((x) => x.meterId));
      for (const it of items) expect(members.has(it.meterId)).toBe(true);
    }
  });

  it('carries the same readings as single publishing', () => {
    const single = run(small());
    const key = (x: Parsed) => `${x.meterId}@${x.ts}:${x.importWh}:${x.exportWh}`;
    expect(new Set(r.readings.map(key))).toEqual(new Set(single.readings.map(key)));
  });
});
