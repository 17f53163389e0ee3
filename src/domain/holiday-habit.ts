import type { Expectation } from './baseline.js';

/**
 * How a meter spends holidays, learned from the holidays it has lived through: [closed share (0 = as on a weekday,
 * 1 = as on a Sunday; -1 = no holiday seen yet), the holiday being collected (local day number, -1 none), its
 * measured, weekday-expected and Sunday-expected Wh]. Part of MeterState (`holiday`).
 */
export const NO_HOLIDAY: readonly number[] = [-1, -1, 0, 0, 0];

/**
 * Folds the holiday being collected into the closed share once `dayNumber` is another day (when its weekday and
 * Sunday levels differ enough to tell).
 */
export function closeHoliday(h: number[], dayNumber: number): void {
  if ((h[1] ?? -1) < 0 || h[1] === dayNumber) return;
  const [closed = -1, day = -1, act = 0, wd = 0, sun = 0] = h;
  if (day >= 0 && wd > 0 && Math.abs(wd - sun) > 0.1 * wd) {
    const share = Math.min(1, Math.max(0, (wd - act) / (wd - sun)));
    h[0] = Math.round((closed < 0 ? share : closed + 0.5 * (share - closed)) * 1e4) / 1e4;
  }
  h[1] = -1;
  h[2] = 0;
  h[3] = 0;
  h[4] = 0;
}

/**
 * What a judged holiday's interval is expected to use: between its weekday (`wd`) and its Sunday (`sun`) level, as
 * this meter spends holidays; before any holiday is known, whichever of the two the interval is nearer. A measured
 * interval is collected into the holiday of `dayNumber`.
 */
export function holidayExpectation(h: number[], dayNumber: number, iv: { wh: number; estimated: boolean }, wd: Expectation, sun: Expectation): Expectation {
  if (!iv.estimated) {
    if ((h[1] ?? -1) < 0) h[1] = dayNumber;
    h[2] = (h[2] ?? 0) + iv.wh;
    h[3] = (h[3] ?? 0) + wd.wh;
    h[4] = (h[4] ?? 0) + sun.wh;
  }
  const closed = h[0] ?? -1;
  if (closed < 0) return Math.abs(iv.wh - sun.wh) / sun.spreadWh < Math.abs(iv.wh - wd.wh) / wd.spreadWh ? sun : wd;
  return { ...wd, wh: wd.wh - closed * (wd.wh - sun.wh), spreadWh: Math.max(wd.spreadWh, sun.spreadWh), samples: Math.min(wd.samples, sun.samples) };
}
