import type { DetectionConfig } from '../contracts/config-detection.js';
import type { BaselineSettings } from './baseline.js';
import type { CommonLevelSettings } from './common-level.js';
import type { DetectorSettings } from './detectors-state.js';
import { holidayDays } from './holidays.js';
import type { VeeSettings } from './intervals.js';
import { DAY_MS, gridOffsetMs, HOUR_MS, MINUTE_MS } from './local-time.js';

/** The stream worker's per-meter settings, compiled once from config/detection.yaml and the deployment's zone. */

export interface StreamSettings {
  zone: string;
  defaultIntervalMs: number;
  toleranceMs: number;
  linearGapMaxMs: number;
  gapFactor: number;
  hourGridOffsetMs: number;
  warmupMs: number;
  silentIntervals: number;
  /** The watermark's lateness: a gap in a meter's own reads longer than silentIntervals plus this was silence. */
  silentLatenessMs: number;
  baseline: BaselineSettings;
  detectors: DetectorSettings;
  /** Local day numbers (days since 1970-01-01, local) of the deployment region's holidays. */
  holidays: ReadonlySet<number>;
  /** Holidays are judged against what the meter does on holidays (true) or not at all (false); they never teach. */
  judgeHolidays: boolean;
  /** The level common to a shard's meters (weather): see common-level.ts. */
  common: CommonLevelSettings;
  /** VEE settings per interval length, computed once. */
  vee: ReadonlyMap<number, VeeSettings>;
}

export function compileSettings(cfg: DetectionConfig, zone: string): StreamSettings {
  const vee = new Map<number, VeeSettings>();
  const hourGridOffsetMs = gridOffsetMs(zone, HOUR_MS);
  for (const minutes of [15, 30, 60, cfg.intervals.defaultMinutes]) {
    const intervalMs = minutes * MINUTE_MS;
    vee.set(intervalMs, {
      toleranceMs: cfg.intervals.lateToleranceMinutes * MINUTE_MS,
      linearGapMaxMs: cfg.intervals.linearGapMaxMinutes * MINUTE_MS,
      gapFactor: cfg.intervals.gapFactor,
      gridOffsetMs: gridOffsetMs(zone, intervalMs),
      hourGridOffsetMs,
    });
  }
  return {
    vee,
    zone,
    defaultIntervalMs: cfg.intervals.defaultMinutes * MINUTE_MS,
    toleranceMs: cfg.intervals.lateToleranceMinutes * MINUTE_MS,
    linearGapMaxMs: cfg.intervals.linearGapMaxMinutes * MINUTE_MS,
    gapFactor: cfg.intervals.gapFactor,
    hourGridOffsetMs: gridOffsetMs(zone, HOUR_MS),
    warmupMs: cfg.baseline.warmupDays * DAY_MS,
    silentIntervals: cfg.silent.intervals,
    silentLatenessMs: cfg.watermark.latenessMinutes * MINUTE_MS,
    baseline: cfg.baseline,
    detectors: cfg,
    holidays: holidayDays(cfg.holidays),
    judgeHolidays: (cfg.holidays?.judgeAs ?? 'learn') === 'learn',
    common: { hours: cfg.collective?.commonHours ?? 0, minSamples: cfg.collective?.commonMinSamples ?? 1 },
  };
}

export function intervalMsOf(meter: { intervalMinutes: number }, s: StreamSettings): number {
  const m = meter.intervalMinutes;
  return m === 15 || m === 30 || m === 60 ? m * MINUTE_MS : s.defaultIntervalMs;
}

export function veeSettings(s: StreamSettings, intervalMs: number): VeeSettings {
  const cached = s.vee.get(intervalMs);
  if (cached !== undefined) return cached;
  return {
    toleranceMs: s.toleranceMs,
    linearGapMaxMs: s.linearGapMaxMs,
    gapFactor: s.gapFactor,
    gridOffsetMs: gridOffsetMs(s.zone, intervalMs),
    hourGridOffsetMs: s.hourGridOffsetMs,
  };
}
