import { describe, expect, it } from 'vitest';
import type { DetectionEvent, IntervalMark } from '../../src/contracts/events.js';
import type { Reading } from '../../src/contracts/reading.js';
import { slotOf } from '../../src/domain/baseline.js';
import { initialDetectors } from '../../src/domain/detectors-state.js';
import { DAY_MS, HOUR_MS, MINUTE_MS } from '../../src/domain/local-time.js';
import { checkSilent, closedDays, type IntervalOut, type MeterState, processRead, type ReadResult } from '../../src/domain/meter-state.js';
import { decodeMeterState, encodeMeterState } from '../../src/domain/meter-state-codec.js';
import { compileSettings } from '../../src/domain/stream-settings.js';
import { testDetectionConfig, testMeter } from '../helpers/detection-settings.js';

const Q = 15 * MINUTE_MS;
const T0 = Date.UTC(2026, 10, 2); // Monday 2026-11-02 00:00 UTC
// These series are perfectly flat on purpose (exact sums): `stuck` would rightly call them stuck, so it is off here
// (tests/unit/detectors-collective.test.ts covers it on realistic series).
const s = compileSettings(testDetectionConfig({ stuck: { maxChance: 1e-6, resolutionWh: 1, minRun: 3, minHours: 1e6 } }), 'UTC');
const meter = testMeter();

/** Steady 100 Wh per quarter hour (400 Wh/h, the test profile's weekday rate), with overrides by index. */
function steady(quarters: number, over: Record<number, number> = {}, from = T0, startWh = 1_000_000): Reading[] {
  const out: Reading[] = [];
  let reg = startWh;
  for (let i = 0; i <= quarters; i++) {
    out.push({ meterId: 'M-1', ts: from + i * Q, importWh: reg });
    reg += over[i] ?? 100;
  }
  return out;
}

interface Run {
  state: MeterState | undefined;
  intervals: IntervalOut[];
  events: DetectionEvent[];
  marks: IntervalMark[];
  outcomes: string[];
  baselinePoints: number;
}

function run(reads: Reading[], opts: { checkpoint?: boolean; state?: MeterState } = {}): Run {
  let state = opts.state;
  const r: Run = { state, intervals: [], events: [], marks: [], outcomes: [], baselinePoints: 0 };
  for (const read of reads) {
    const out: ReadResult = processRead(state, read, meter, s);
    state = opts.checkpoint ? decodeMeterState(encodeMeterState(out.state), s) : out.state;
    r.intervals.push(...out.intervals);
    r.events.push(...out.events);
    r.marks.push(...out.marks);
    r.outcomes.push(out.outcome);
    r.baselinePoints += out.baselinePoints.length;
  }
  r.state = state;
  return r;
}

const brief = (evs: DetectionEvent[]) => evs.map((e) => `${e.type} ${e.status} ${new Date(e.ts).toISOString().slice(5, 16)}`);

describe('processRead', () => {
  it('a steady meter: one interval per read, no events, one baseline point per hour', () => {
    const r = run(steady(8));
    expect(r.intervals.map((i) => i.wh)).toEqual([100, 100, 100, 100, 100, 100, 100, 100]);
    expect(r.intervals.map((i) => i.demandW)).toEqual([400, 400, 400, 400, 400, 400, 400, 400]);
    expect(r.events).toEqual([]);
    expect(r.baselinePoints).toBe(2);
  });

  it('warm-up: only after 21 days does a spike fire', () => {
    const day10 = 9 * 96 + 48; // 2026-11-11 12:00
    const day22 = 21 * 96 + 48; // 2026-11-23 12:00
    const r = run(steady(23 * 96, { [day10]: 2000, [day22]: 2000 }));
    expect(brief(r.events)).toEqual(['spike firing 11-23T12:15', 'spike clear 11-23T12:30']);
    // the warm-up spike was clipped to 550 Wh/h when it taught its slot; 11 days later it has nearly decayed
    expect(r.events[0]).toMatchObject({ value: 2000, expected: 100.382, severity: 'major' });
  });

  it('anomalous intervals do not teach the baseline', () => {
    const day22 = 21 * 96 + 48;
    const slot = slotOf('hourDaytype', 'UTC', T0 + day22 * Q);
    const spiked = run(steady(22 * 96, { [day22]: 2000 }));
    const plain = run(steady(22 * 96, { [day22]: 101 }));
    expect(brief(spiked.events)).toEqual(['spike firing 11-23T12:15', 'spike clear 11-23T12:30']);
    // every weekday sample so far was exactly the prior, 400 Wh/h; the spike left it untouched
    expect(spiked.state?.baseline.mean[slot]).toBe(400);
    // an ordinary interval of the same slot does teach it (404 Wh/h, then three at 400, alpha 0.05)
    let m = Math.fround(400 + 0.05 * (404 - 400));
    for (let k = 0; k < 3; k++) m = Math.fround(m + 0.05 * (400 - m));
    expect(plain.state?.baseline.mean[slot]).toBe(m);
  });

  it('a register reset fires at the read that fell and clears at the next normal read', () => {
    const reads: Reading[] = [0, 100, 200, 50, 150].map((wh, i) => ({ meterId: 'M-1', ts: T0 + i * Q, importWh: wh }));
    const r = run(reads);
    expect(r.intervals.map((i) => [i.wh, i.estimated])).toEqual([
      [100, false],
      [100, false],
      [50, true],
      [100, false],
    ]);
    expect(brief(r.events)).toEqual(['registerReset firing 11-02T00:45', 'registerReset clear 11-02T01:00']);
    expect(r.events[0]).toMatchObject({ value: 50, expected: 200, reason: 'import register fell from 200 to 50 Wh' });
  });

  it('classifies duplicates, conflicting duplicates and late reads without touching state', () => {
    const r = run(steady(16));
    const state = r.state;
    const cases: Array<[Reading, string]> = [
      [{ meterId: 'M-1', ts: T0 + 16 * Q, importWh: 1_001_600 }, 'duplicate'],
      [{ meterId: 'M-1', ts: T0 + 16 * Q, importWh: 1_001_700 }, 'conflict'],
      [{ meterId: 'M-1', ts: T0 + 7 * Q, importWh: 1_000_700 }, 'late'],
    ];
    for (const [read, outcome] of cases) {
      const out = processRead(state, read, meter, s);
      expect([out.outcome, out.intervals.length, out.state]).toEqual([outcome, 0, state]);
    }
  });

  it('an out-of-order read recomputes its intervals without judging them twice', () => {
    const reads = steady(12).filter((_, i) => i !== 10);
    const late: Reading = { meterId: 'M-1', ts: T0 + 10 * Q, importWh: 1_000_000 + 10 * 100 };
    const r = run([...reads, late]);
    expect(r.outcomes.at(-1)).toBe('accepted');
    const last = r.intervals.slice(-2);
    expect(last.map((i) => [(i.start - T0) / Q, i.wh, i.estimated])).toEqual([
      [9, 100, false],
      [10, 100, false],
    ]);
    const firstPass = r.intervals.filter((i) => i.start === T0 + 9 * Q)[0];
    expect([firstPass?.wh, firstPass?.estimated]).toEqual([100, true]);
  });

  it('fills a 6 h gap by the baseline shape (weekday 400 Wh/h, weekend 600 Wh/h), summing exactly', () => {
    // Friday 2026-11-06 21:00 → Saturday 03:00 UTC: 3 h at 400 and 3 h at 600 Wh/h, 3000 Wh across the gap
    const fri = Date.UTC(2026, 10, 6, 21);
    const reads: Reading[] = [
      { meterId: 'M-1', ts: fri - Q, importWh: 9900 },
      { meterId: 'M-1', ts: fri, importWh: 10_000 },
      { meterId: 'M-1', ts: fri + 6 * HOUR_MS, importWh: 13_000 },
    ];
    const r = run(reads);
    const gap = r.intervals.filter((i) => i.start >= fri);
    expect(gap.map((i) => i.wh)).toEqual([...Array.from({ length: 12 }, () => 100), ...Array.from({ length: 12 }, () => 150)]);
    expect(gap.every((i) => i.estimated)).toBe(true);
    expect(gap.reduce((a, i) => a + i.wh, 0)).toBe(3000);
  });
});

describe('silent (event time, by the shard watermark)', () => {
  it('fires once when the watermark passes newest + 4 intervals, clears on the next read', () => {
    const r = run(steady(4)); // reads 00:00 … 01:00
    const state = r.state;
    if (state === undefined) throw new Error('no state');
    expect(checkSilent(state, T0 + 2 * HOUR_MS - 1, meter, s).events).toEqual([]);
    const fired = checkSilent(state, T0 + 2 * HOUR_MS, meter, s);
    expect(brief(fired.events)).toEqual(['silent firing 11-02T02:00']);
    expect(fired.events[0]?.reason).toBe('no read for 60 min since 2026-11-02T01:00:00.000Z');
    expect(checkSilent(fired.state, T0 + 5 * HOUR_MS, meter, s).events).toEqual([]);
    const back = processRead(fired.state, { meterId: 'M-1', ts: T0 + 3 * HOUR_MS, importWh: 1_000_900 }, meter, s);
    expect(brief(back.events)).toEqual(['silent clear 11-02T03:00']);
    // a backlog flushed later resumes before the fired deadline: the clear does not precede the firing
    const backlog = processRead(fired.state, { meterId: 'M-1', ts: T0 + HOUR_MS + Q, importWh: 1_000_500 }, meter, s);
    expect(brief(backlog.events)).toEqual(['silent clear 11-02T02:00']);
  });

  it("a gap in the meter's own reads the watermark would have caught fires and clears too (replay does not depend on arrival order)", () => {
    const before = run(steady(4)); // reads 00:00 … 01:00; no watermark passes its deadline (02:00)
    // Next read 3 h later: a gap over 4 intervals + 30 min of lateness.
    const back = processRead(before.state, { meterId: 'M-1', ts: T0 + 4 * HOUR_MS, importWh: 1_000_700 }, meter, s);
    expect(brief(back.events)).toEqual(['silent firing 11-02T02:00', 'silent clear 11-02T04:00']);
    expect(back.events[0]?.reason).toBe('no read for 60 min since 2026-11-02T01:00:00.000Z (next read 2026-11-02T04:00:00.000Z)');
    expect(back.state.det.silent).toBe(false);
    // 90 min later is within what the live watermark tolerates: no silence.
    const soon = processRead(before.state, { meterId: 'M-1', ts: T0 + HOUR_MS + 90 * MINUTE_MS, importWh: 1_000_600 }, meter, s);
    expect(brief(soon.events).filter((e) => e.startsWith('silent'))).toEqual([]);
    // Already fired by the watermark: only the clear.
    const fired = checkSilent(before.state ?? back.state, T0 + 2 * HOUR_MS, meter, s);
    const after = processRead(fired.state, { meterId: 'M-1', ts: T0 + 4 * HOUR_MS, importWh: 1_000_700 }, meter, s);
    expect(brief(after.events)).toEqual(['silent clear 11-02T04:00']);
  });
});

describe('closed days', () => {
  it('lists the local days of intervals the watermark has already closed', () => {
    const iv = (start: number) => ({ start, end: start + Q, wh: 1, exportWh: 0, registerWh: 1, estimated: false });
    const ivs = [iv(Date.UTC(2026, 10, 1, 23, 45)), iv(Date.UTC(2026, 10, 2, 0, 0)), iv(Date.UTC(2026, 10, 2, 23, 45))];
    expect(closedDays(ivs, Date.UTC(2026, 10, 2, 0, 30), 'UTC')).toEqual(['2026-11-01']);
    expect(closedDays(ivs, Date.UTC(2026, 10, 3), 'UTC')).toEqual(['2026-11-01', '2026-11-02']);
    // in Madrid (UTC+1) the 23:45 UTC interval of Nov 1 belongs to Nov 2
    expect(closedDays(ivs, Date.UTC(2026, 10, 2, 0, 30), 'Europe/Madrid')).toEqual([]);
  });
});

describe('checkpointing', () => {
  it('a run checkpointed after every read gives exactly the same intervals, events and state', () => {
    // 30 days with a gap, an out-of-order read, a duplicate, a reset and two spikes
    const reads = steady(30 * 96, { [25 * 96 + 10]: 3000, [26 * 96 + 50]: 2500 });
    const gapped = reads.filter((_, i) => i < 500 || i > 530);
    const shuffled = [...gapped.slice(0, 100), gapped[101], gapped[100], gapped[101], ...gapped.slice(102)].filter((x): x is Reading => x !== undefined);
    // the meter is replaced at quarter 2000: its register restarts at 5 Wh
    const resetAt = T0 + 2000 * Q;
    const offset = 1_000_000 + 2000 * 100 - 5;
    const series = shuffled.map((x) => (x.ts >= resetAt ? { ...x, importWh: x.importWh - offset } : x));
    const a = run(series);
    const b = run(series, { checkpoint: true });
    expect(b.intervals).toEqual(a.intervals);
    expect(b.events).toEqual(a.events);
    expect(b.state).toEqual(a.state);
    expect(a.outcomes.filter((o) => o === 'duplicate')).toHaveLength(1);
    expect(brief(a.events.filter((e) => e.type === 'registerReset'))).toEqual(['registerReset firing 11-22T20:00', 'registerReset clear 11-22T20:15']);
    expect(brief(a.events.filter((e) => e.type === 'spike'))).toEqual([
      'spike firing 11-27T02:45',
      'spike clear 11-27T03:00',
      'spike firing 11-28T12:45',
      'spike clear 11-28T13:00',
    ]);
    // the last value of every interval sums to the register movement; the reset interval counts the new
    // meter's 5 Wh (it started at 0) instead of the usual 100
    const final = new Map<number, number>();
    for (const iv of a.intervals) final.set(iv.start, iv.wh);
    expect(final.size).toBe(30 * 96);
    expect([...final.values()].reduce((x, y) => x + y, 0)).toBe(30 * 96 * 100 + 2900 + 2400 - 100 + 5);
  });

  it('drop through processRead: seen hours after a bypass starts, the same with a checkpoint after every read', () => {
    // 22 days steady, then the register records a fifth of the usual 100 Wh per quarter hour from day 22 00:00.
    // z = (20 − 100) / 12.5 clips to −4: each quarter adds (4 − 1) / 4 spread-hours, past h = 14 in the 19th quarter
    // (04:45; the former 12 h window took until 11:45). Marked from 00:00, every quarter hour while it holds.
    const over: Record<number, number> = {};
    for (let i = 22 * 96; i < 26 * 96; i++) over[i] = 20;
    const reads = steady(26 * 96, over);
    const a = run(reads);
    const b = run(reads, { checkpoint: true });
    expect(b.events).toEqual(a.events);
    expect(b.state).toEqual(a.state);
    expect(brief(a.events.filter((e) => e.type === 'drop'))).toEqual([
      'drop firing 11-24T04:45',
      'drop firing 11-25T04:45',
      'drop firing 11-26T04:45',
      'drop firing 11-27T04:45',
    ]);
    const marks = a.marks.filter((m) => m.type === 'drop');
    expect(marks.length).toBe(4 * 96);
    // marked back at the firing, with what the slot expects then: it learnt the first hours (clipped) before it fired
    expect(marks[0]).toMatchObject({ start: T0 + 22 * 96 * Q, wh: 20, expectedWh: 92.5 });
  });

  it('an older checkpoint (the sliding-window drop, 8 detector numbers) decodes into fresh, valid collective detectors', () => {
    const r = run(steady(4));
    const raw = JSON.parse(encodeMeterState(r.state ?? expect.fail('no state'))) as { d: number[]; w?: string; y?: string };
    // the earlier layout: [flags, flatFrom, flatExpWh, vRun, dropUntil, dropWh, dropExpWh, dropNextAt], drop firing (bit 7)
    raw.d = [(1 << 7) | (1 << 5), T0, 300, 2, T0, 400, 1000, T0 + 86_400_000];
    delete raw.w;
    delete raw.y;
    const st = decodeMeterState(JSON.stringify(raw), s);
    expect(st?.det).toEqual({ ...initialDetectors(), flat: true, flatFrom: T0, flatExpWh: 300, vRun: 2 });
  });

  it('a checkpoint of the weekday/weekend baseline continues under weekday/Saturday/Sunday slots (nothing restarts)', () => {
    const r = run(steady(4));
    const cfg = testDetectionConfig();
    const s72 = compileSettings({ ...cfg, baseline: { ...cfg.baseline, slots: 'hourWeekdaySatSun' } }, 'UTC');
    const st = decodeMeterState(encodeMeterState(r.state ?? expect.fail('no state')), s72);
    expect(st?.vee).toEqual(r.state?.vee);
    expect(st?.baseline.mean.length).toBe(72);
  });

  it('state stays compact: under 2 KiB per meter after 30 days', () => {
    const r = run(steady(30 * 96));
    const enc = encodeMeterState(r.state ?? expect.fail('no state'));
    expect(enc.length).toBe(1461);
    expect(decodeMeterState(enc, s)).toEqual(r.state);
    expect(decodeMeterState('{"v":2}', s)).toBeUndefined();
    expect(decodeMeterState('not json', s)).toBeUndefined();
  });

  it('warm-up is measured in event time from the first read', () => {
    const r = run(steady(2));
    expect(r.state?.firstTs).toBe(T0);
    expect((r.state?.firstTs ?? 0) + 21 * DAY_MS).toBe(Date.UTC(2026, 10, 23));
  });
});
