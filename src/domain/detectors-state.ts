import type { DetectionConfig } from '../contracts/config-detection.js';

/** Per-meter detector state: one small record, checkpointed with the meter (meter-state-codec.ts). */

export type DetectorSettings = Pick<
  DetectionConfig,
  'spike' | 'drop' | 'flatline' | 'reverseFlow' | 'voltage' | 'customerPeak' | 'collective' | 'stuck' | 'shape' | 'levelShift'
>;

/** Intervals kept for marking a run back to its start (a run that fires later than this is marked from here). */
export const RECENT_INTERVALS = 48;

export interface DetectorState {
  spike: boolean;
  reverse: boolean;
  peak: boolean;
  reset: boolean;
  silent: boolean;
  flat: boolean;
  /** Start of the current run of zero-energy intervals, -1 when none. */
  flatFrom: number;
  flatExpWh: number;
  /** Out-of-band voltage reads in a row. */
  vRun: number;
  voltage: boolean;
  /**
   * Collective detectors: a two-sided CUSUM of standardised residuals. Up side (`highUsage`): statistic, EWMA of z
   * while firing, start of the run (-1 when none), measured and expected Wh since then, next reminder, firing.
   */
  upS: number;
  upE: number;
  upFrom: number;
  upWh: number;
  upExpWh: number;
  upNextAt: number;
  high: boolean;
  /** Down side (`drop`), the same fields. */
  dnS: number;
  dnE: number;
  dnFrom: number;
  dropWh: number;
  dropExpWh: number;
  dropNextAt: number;
  drop: boolean;
  /** stuck: the repeated value (-1 when none), how many in a row, since when, log of their chance, firing. */
  stuckWh: number;
  stuckN: number;
  stuckFrom: number;
  stuckLogP: number;
  stuckNextAt: number;
  stuck: boolean;
  /** shape: local day being collected (-1 none), its start, intervals seen, intervals unusable or marked, Wh per local hour. */
  dayNo: number;
  dayStart: number;
  dayN: number;
  dayBad: number;
  dayHours: Float32Array;
  /** This meter's typical day-to-day variation: EWMA of |day total / expected − 1| over normal days. */
  dayDev: number;
  /** This meter's typical day-shape distance: EWMA mean and mean deviation, days judged; firing. */
  shapeMean: number;
  shapeDev: number;
  shapeDays: number;
  shape: boolean;
  /** Local hours (bits 0–23) in which this meter has exported: its import there follows the weather (PV). */
  exportHours: number;
  /** Measured Wh of the latest evaluated intervals (a ring, newest at recentN − 1 mod size), and the end of the newest. */
  recent: Float32Array;
  recentN: number;
  recentEnd: number;
}

export function initialDetectors(): DetectorState {
  return {
    spike: false,
    reverse: false,
    peak: false,
    reset: false,
    silent: false,
    flat: false,
    flatFrom: -1,
    flatExpWh: 0,
    vRun: 0,
    voltage: false,
    upS: 0,
    upE: 0,
    upFrom: -1,
    upWh: 0,
    upExpWh: 0,
    upNextAt: 0,
    high: false,
    dnS: 0,
    dnE: 0,
    dnFrom: -1,
    dropWh: 0,
    dropExpWh: 0,
    dropNextAt: 0,
    drop: false,
    stuckWh: -1,
    stuckN: 0,
    stuckFrom: -1,
    stuckLogP: 0,
    stuckNextAt: 0,
    stuck: false,
    dayNo: -1,
    dayStart: -1,
    dayN: 0,
    dayBad: 0,
    dayHours: new Float32Array(24),
    dayDev: 0,
    shapeMean: 0,
    shapeDev: 0,
    shapeDays: 0,
    shape: false,
    exportHours: 0,
    recent: new Float32Array(RECENT_INTERVALS),
    recentN: 0,
    recentEnd: -1,
  };
}

/** Rounded as checkpointed (short JSON numbers; the state in memory equals the decoded one). */
export const r4 = (x: number): number => Math.round(x * 1e4) / 1e4;
