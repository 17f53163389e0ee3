import { describe, expect, it } from 'vitest';
import { checkMeterCheckpoint } from '../../src/contracts/meter-checkpoint.js';
import type { Reading } from '../../src/contracts/reading.js';
import { MINUTE_MS } from '../../src/domain/local-time.js';
import { type MeterState, processExchange, processRead } from '../../src/domain/meter-state.js';
import { decodeMeterState, encodeMeterState } from '../../src/domain/meter-state-codec.js';
import { compileSettings } from '../../src/domain/stream-settings.js';
import { testDetectionConfig, testMeter } from '../helpers/detection-settings.js';

const Q = 15 * MINUTE_MS;
const T0 = Date.UTC(2026, 10, 2); // Monday 2026-11-02 00:00 UTC
const s = compileSettings(testDetectionConfig(), 'UTC');
const meter = testMeter();

/** Two days of 100 Wh quarter hours, a register reset at quarter 120, its exchange work order, then a holiday habit. */
function state(): MeterState {
  let st: MeterState | undefined;
  let reg = 1_000_000;
  for (let i = 0; i <= 2 * 96; i++) {
    if (i === 120) reg = 500;
    const r: Reading = { meterId: meter.meterId, ts: T0 + i * Q, importWh: reg, exportWh: 0, voltageV: 231 };
    st = processRead(st, r, meter, s).state;
    reg += 100;
  }
  const ex = processExchange(st, { ts: T0 + 119 * Q, installWh: 400, removalWh: 1_011_950 }, meter, s).state;
  return { ...ex, holiday: [0.25, -1, 0, 0, 0] };
}

const encoded = JSON.parse(encodeMeterState(state())) as Record<string, unknown>;
const variant = (over: Record<string, unknown>, drop: string[] = []): string => {
  const o: Record<string, unknown> = { ...encoded, ...over };
  for (const k of drop) delete o[k];
  return JSON.stringify(o);
};

describe('the meter checkpoint (src/contracts/meter-checkpoint.ts)', () => {
  it('every key the encoder writes is in the contract, and a state round-trips to the same bytes', () => {
    expect(Object.keys(encoded)).toEqual(['v', 'i', 'r', 'f', 'e', 'l', 'n', 'h', 'o', 'b', 'd', 'w', 'y', 'x', 'z']);
    expect(checkMeterCheckpoint.Check(encoded)).toBe(true);
    const raw = JSON.stringify(encoded);
    const st = decodeMeterState(raw, s) ?? expect.fail('not decoded');
    expect(st).toEqual(state());
    expect(encodeMeterState(st)).toBe(raw);
  });

  it.each([
    ['another version', variant({ v: 2 })],
    ['no interval length', variant({}, ['i'])],
    ['a read of two numbers', variant({ r: [[T0, 1]] })],
    ['a read with a string', variant({ r: [[T0, 1, '2']] })],
    ['noTeach not numbers', variant({ n: ['a'] })],
    ['a baseline that is not a string', variant({ b: 1 })],
    ['a baseline of the wrong size', variant({ b: 'AAAA' })],
    ['detectors of 9 numbers', variant({ d: [0, -1, 0, 0, 0, 0, 0, 0, 0] })],
    ['a holiday habit of 4 numbers', variant({ o: [0, -1, 0, 0] })],
    ['a recent ring of the wrong length', variant({ w: 'AAAA' })],
    ['day hours that are not base64 text', variant({ y: [1] })],
    ['an exchange of 3 numbers', variant({ x: [T0, 400, -1] })],
    ['a traced reset read of 2 numbers', variant({ z: [[T0, 1]] })],
    ['null', 'null'],
    ['an array', '[]'],
    ['not JSON', '{"v":1'],
  ])('%s is no checkpoint: the meter starts afresh', (_what, raw) => {
    expect(decodeMeterState(raw, s)).toBeUndefined();
  });

  it('an unknown key is ignored (a newer writer may add one)', () => {
    expect(decodeMeterState(variant({ q: 1 }), s)).toEqual(state());
  });

  it('an older checkpoint: noTeach as absolute times, no holiday habit, no exchange, no ring or day yet', () => {
    const st = state();
    const l = st.learnedUntil;
    const raw = variant({ n: [l + 4 * Q, l + 5 * Q] }, ['o', 'x', 'z', 'w', 'y']);
    const back = decodeMeterState(raw, s) ?? expect.fail('not decoded');
    expect(back.noTeach).toEqual([l + 4 * Q, l + 5 * Q]);
    expect(back.holiday).toEqual([-1, -1, 0, 0, 0]);
    expect(back.vee.exchange).toBeUndefined();
    expect(back.vee.lastReset).toBeUndefined();
    expect([back.det.recentN, back.det.dayNo]).toEqual([0, -1]);
  });
});
