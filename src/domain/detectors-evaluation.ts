import type { AnomalyType, DetectionEvent, IntervalMark } from '../contracts/events.js';
import { type DetectorState, RECENT_INTERVALS } from './detectors-state.js';

/** What an interval detector reads (the interval, what the baseline expects) and writes (events, marks). */

/** One computed interval as the detectors see it. */
export interface IntervalFacts {
  start: number;
  end: number;
  wh: number;
  exportWh: number;
  estimated: boolean;
  /** Average import demand over the interval, W. */
  demandW: number;
  expectedWh: number;
  spreadWh: number;
  /** Past the warm-up: the statistical detectors may fire. */
  warm: boolean;
  /** The interval's baseline slot has learned enough samples to judge a single interval (spike, flatline). */
  slotReady: boolean;
  /** The meter's mean expected energy per interval (scale of the scale-free floors); 0: unknown. */
  meterWh?: number;
  /** Expected energy per interval of the meter's busiest slot; 0: unknown. */
  peakWh?: number;
  /** A holiday of the meter's region: neither fires nor teaches. */
  holiday?: boolean;
  /** Local day number (days since 1970-01-01 local) and hour: the day-shape check; absent: no shape check. */
  dayNumber?: number;
  hour?: number;
}

/** What the baseline expects elsewhere: for marking a run back and for the day shape. */
export interface Expectations {
  /** Expected Wh of this meter's interval starting at `start`. */
  intervalWh(start: number): number;
  /** Expected Wh per hour at a local weekday (0 = Monday) and hour. */
  hourWh(weekday: number, hour: number): number;
}

export const NO_EXPECTATIONS: Expectations = { intervalWh: () => 0, hourWh: () => 0 };

export interface Evaluation {
  det: DetectorState;
  events: DetectionEvent[];
  /** Every interval judged anomalous by this step: the current one and any marked back to a run's start. */
  marks: IntervalMark[];
  /** Whether the interval may teach the baseline (not anomalous, not estimated, not a holiday). */
  teach: boolean;
  /** A level shift was adopted: multiply the baseline by this. */
  rescale?: number;
}

/**
 * Marks the intervals of a run back to `from` (those before `iv`, from the ring of recent values). A collective run
 * marks only those that point its way (`up`: above what was expected, `down`: below and not zero): intervals it
 * passed over without evidence (solar hours, a zero import) are not its extent. Stuck and flatline runs mark all.
 */
export function markBack(
  det: DetectorState,
  iv: IntervalFacts,
  from: number,
  meterId: string,
  type: AnomalyType,
  way: 'up' | 'down' | 'all',
  score: number,
  src: Expectations,
  marks: IntervalMark[],
): void {
  const len = iv.end - iv.start;
  if (len <= 0 || from < 0 || det.recentEnd !== iv.start) return;
  const back = Math.min(Math.round((iv.start - from) / len), det.recentN, RECENT_INTERVALS);
  for (let j = back; j >= 1; j--) {
    const start = iv.start - j * len;
    const idx = (((det.recentN - j) % RECENT_INTERVALS) + RECENT_INTERVALS) % RECENT_INTERVALS;
    const wh = det.recent[idx] ?? 0;
    const expectedWh = src.intervalWh(start);
    // (An expectation of 0 is none known: nothing to compare with, the run's extent stands.)
    if (expectedWh > 0 && ((way === 'up' && !(wh > expectedWh)) || (way === 'down' && !(wh < expectedWh && wh > 0)))) continue;
    marks.push({ meterId, start, end: start + len, type, wh, expectedWh, score });
  }
}

/** Marks the interval itself. */
export function mark(iv: IntervalFacts, meterId: string, type: AnomalyType, score: number, marks: IntervalMark[]): void {
  marks.push({ meterId, start: iv.start, end: iv.end, type, wh: iv.wh, expectedWh: iv.expectedWh, score });
}

/** Appends the interval to the ring of recent values (restarting it after a gap in the evaluated intervals). */
export function remember(det: DetectorState, iv: IntervalFacts): void {
  if (det.recentEnd !== iv.start) det.recentN = 0;
  det.recent[det.recentN % RECENT_INTERVALS] = iv.wh;
  det.recentN = det.recentN + 1 >= 2 * RECENT_INTERVALS ? RECENT_INTERVALS + ((det.recentN + 1) % RECENT_INTERVALS) : det.recentN + 1;
  det.recentEnd = iv.end;
}
