import { Compile } from 'typebox/compile';
import { BillingReadsResponse } from '../../src/contracts/billing.js';
import { dayWindow } from '../../src/domain/local-time.js';
import { bandAt, type Tariff } from '../../src/domain/tariffs.js';
import { int, lp } from '../../src/shared/line-protocol.js';
import { Rng } from '../../simulators/prng.js';
import type { Interval } from '../../src/domain/intervals.js';

/**
 * Interval points as the stream worker writes them (time = interval start, register at the end), built
 * from a seeded ledger of true register values, for billing tests that run without the stream worker.
 */

export interface FixtureMeter {
  meterId: string;
  customerId: string;
  tariff: Tariff;
  intervalMinutes: 15 | 30 | 60;
  startRegisterWh: number;
  /** Interval indexes flagged estimated. */
  estimated?: ReadonlySet<number>;
  /** Interval indexes left out (not yet delivered). */
  missing?: ReadonlySet<number>;
  /** Write raw `reading` points only at these instants (default: every interval end). */
  readsOnlyAt?: ReadonlySet<number>;
}

/** A domain interval plus whether the fixture left it without a read (a gap). */
export interface FixtureInterval extends Interval {
  missing: boolean;
}

/** Seeded uniform [0, 1) draws from the simulators' generator, so the data is reproducible. */
export function rng(seed: number): () => number {
  const r = new Rng(seed, 'billing-test');
  return () => r.next();
}

/** The meter's true intervals over [fromMs, toMs) (fromMs on its interval grid), seeded by its id. */
export function ledger(m: FixtureMeter, fromMs: number, toMs: number): FixtureInterval[] {
  let seed = 7;
  for (const c of m.meterId) seed = (seed * 31 + c.charCodeAt(0)) >>> 0;
  const rand = rng(seed);
  const dur = m.intervalMinutes * 60_000;
  const out: FixtureInterval[] = [];
  let reg = m.startRegisterWh;
  for (let s = fromMs, i = 0; s < toMs; s += dur, i++) {
    const hour = new Date(s).getUTCHours();
    const wh = Math.floor(rand() * (hour >= 8 && hour < 20 ? 900 : 300) * (m.intervalMinutes / 15));
    reg += wh;
    out.push({
      start: s,
      end: s + dur,
      wh,
      exportWh: hour === 12 ? Math.floor(rand() * 50) : 0,
      registerWh: reg,
      estimated: m.estimated?.has(i) ?? false,
      missing: m.missing?.has(i) ?? false,
    });
  }
  return out;
}

export function intervalLines(m: FixtureMeter, ivs: readonly FixtureInterval[], includeMissing = false): string[] {
  const dur = m.intervalMinutes * 60_000;
  return ivs
    .filter((iv) => includeMissing || !iv.missing)
    .map((iv) =>
      lp(
        'interval',
        { meter: m.meterId, feeder: 'F1', transformer: 'T1', class: 'residential', band: bandAt(m.tariff, iv.start) },
        {
          wh: int(iv.wh),
          export_wh: int(iv.exportWh),
          demand_w: (iv.wh * 3_600_000) / dur,
          register_wh: int(iv.registerWh),
          estimated: iv.estimated,
        },
        iv.start,
      ),
    );
}

export function readingLines(m: FixtureMeter, ivs: readonly FixtureInterval[]): string[] {
  return ivs
    .filter((iv) => !iv.missing && (m.readsOnlyAt === undefined || m.readsOnlyAt.has(iv.end)))
    .map((iv) => lp('reading', { meter: m.meterId, feeder: 'F1' }, { import_wh: int(iv.registerWh), export_wh: int(0) }, iv.end));
}

export interface ExpectedRead {
  startRegisterWh: number;
  endRegisterWh: number;
  totalWh: number;
  bands: Record<string, number>;
  maxDemandW: number;
  estimatedIntervals: number;
}

/**
 * What a read over local days [fromDay, toDay) must say, from the ledger alone: registers at the local
 * boundaries and the energy per band of the interval start (band edges in these tests fall on whole hours).
 */
export function expectedRead(m: FixtureMeter, ivs: readonly FixtureInterval[], fromDay: string, toDay: string): ExpectedRead {
  const from = dayWindow(m.tariff.timezone, fromDay).startMs;
  const to = dayWindow(m.tariff.timezone, toDay).startMs;
  const inside = ivs.filter((iv) => iv.start >= from && iv.end <= to);
  const first = inside[0];
  const last = inside[inside.length - 1];
  if (first === undefined || last === undefined) throw new Error(`fixture: no intervals for ${m.meterId} ${fromDay}..${toDay}`);
  const bands: Record<string, number> = {};
  for (const b of m.tariff.bands) bands[b] = 0;
  let maxDemandW = 0;
  for (const iv of inside) {
    const b = bandAt(m.tariff, iv.start);
    bands[b] = (bands[b] ?? 0) + iv.wh;
    maxDemandW = Math.max(maxDemandW, (iv.wh * 60) / m.intervalMinutes);
  }
  return {
    startRegisterWh: first.registerWh - first.wh,
    endRegisterWh: last.registerWh,
    totalWh: inside.reduce((s, iv) => s + iv.wh, 0),
    bands,
    maxDemandW,
    estimatedIntervals: inside.filter((iv) => iv.estimated).length,
  };
}

const checkReads = Compile(BillingReadsResponse);

/** A 200 reads page, checked against the contract's schema (not just cast). */
export function readsOf(res: { statusCode: number; body: string }): BillingReadsResponse {
  const v: unknown = JSON.parse(res.body);
  if (res.statusCode !== 200 || !checkReads.Check(v)) throw new Error(`not a billing reads page (${res.statusCode}): ${res.body.slice(0, 300)}`);
  return v;
}
