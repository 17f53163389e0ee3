import type { DetectionEvent } from '../contracts/events.js';
import type { ResetSeen } from './intervals.js';
import { MINUTE_MS } from './local-time.js';
import { type MeterRef, meterEvent, pct } from './detection-events.js';
import type { DetectorSettings, DetectorState } from './detectors-state.js';

/** Per-read detectors: registerReset, silent (as the meter's own reads show it), voltage. */

/** A read as the per-read detectors see it. */
export interface ReadFacts {
  ts: number;
  importWh: number;
  voltageV?: number | undefined;
  /** The read is the meter's newest (not one inserted out of order). */
  appended: boolean;
  /** Register decreases the read revealed. */
  resets: readonly ResetSeen[];
  /** The meter's newest read before this one; undefined for its first. */
  previousTs: number | undefined;
}

export interface SilenceSettings {
  intervalMs: number;
  /** Silent after this many intervals without a read. */
  silentIntervals: number;
  /** The watermark's lateness: a gap in a meter's own reads longer than silentIntervals plus this was silence. */
  silentLatenessMs: number;
}

/** Event time after which a meter whose newest read is at `newestTs` counts as silent: N of its intervals later. */
export function silentDeadlineAfter(newestTs: number, silentIntervals: number, intervalMs: number): number {
  return newestTs + silentIntervals * intervalMs;
}

/**
 * Runs the per-read detectors on one accepted read, in order: registerReset, silent, voltage. `det` is updated in
 * place (the caller's copy for this read); returns the events.
 */
export function evaluateRead(det: DetectorState, read: ReadFacts, meter: MeterRef, s: DetectorSettings, silence: SilenceSettings): DetectionEvent[] {
  const events: DetectionEvent[] = [];
  registerResetStep(det, read, meter, events);
  silentStep(det, read, meter, silence, events);
  if (read.voltageV !== undefined) events.push(...evaluateVoltage(det, read.ts, read.voltageV, meter, s).events);
  return events;
}

/** registerReset: fires on every register decrease; the next newest read that shows none clears it. */
function registerResetStep(det: DetectorState, read: ReadFacts, meter: MeterRef, events: DetectionEvent[]): void {
  for (const r of read.resets) {
    det.reset = true;
    events.push(
      meterEvent(meter, 'registerReset', 'firing', r.ts, {
        value: r.afterWh,
        expected: r.beforeWh,
        score: r.beforeWh - r.afterWh,
        severity: 'warning',
        reason: `import register fell from ${r.beforeWh} to ${r.afterWh} Wh`,
      }),
    );
  }
  if (read.appended && read.previousTs !== undefined && read.resets.length === 0 && det.reset) {
    det.reset = false;
    events.push(
      meterEvent(meter, 'registerReset', 'clear', read.ts, {
        value: read.importWh,
        expected: read.importWh,
        score: 0,
        severity: 'info',
        reason: 'import register advancing again',
      }),
    );
  }
}

/**
 * silent, seen in the meter's own reads: a replay or a big backfill entry can deliver the meter's next read before
 * the shard's watermark ever passed its deadline, so judging by the watermark alone would depend on arrival order.
 * A gap the live watermark would have caught (silentIntervals, plus its lateness) fires and clears here.
 */
function silentStep(det: DetectorState, read: ReadFacts, meter: MeterRef, silence: SilenceSettings, events: DetectionEvent[]): void {
  if (!read.appended) return;
  const { intervalMs, silentIntervals, silentLatenessMs } = silence;
  const before = read.previousTs;
  if (!det.silent && before !== undefined && read.ts - before > silentIntervals * intervalMs + silentLatenessMs) {
    det.silent = true;
    const minutes = Math.round((silentIntervals * intervalMs) / MINUTE_MS);
    events.push(
      meterEvent(meter, 'silent', 'firing', silentDeadlineAfter(before, silentIntervals, intervalMs), {
        value: silentIntervals,
        expected: 0,
        score: (read.ts - before) / intervalMs,
        severity: 'warning',
        reason: `no read for ${minutes} min since ${new Date(before).toISOString()} (next read ${new Date(read.ts).toISOString()})`,
      }),
    );
  }
  if (det.silent) {
    det.silent = false;
    // A backlog flushed late can resume before the deadline that fired: the clear never precedes the firing.
    const fired = before === undefined ? read.ts : silentDeadlineAfter(before, silentIntervals, intervalMs);
    events.push(
      meterEvent(meter, 'silent', 'clear', Math.max(read.ts, fired), {
        value: 0,
        expected: 0,
        score: 0,
        severity: 'info',
        reason: 'reads resumed',
      }),
    );
  }
}

/**
 * voltage: outside nominal ± tolerance for `minConsecutive` reads in a row; one event per such read. `prev` is updated
 * in place and returned as `det`, like evaluateInterval (this runs once per read: the caller owns the state).
 */
export function evaluateVoltage(
  prev: DetectorState,
  ts: number,
  voltageV: number,
  meter: MeterRef,
  s: DetectorSettings,
): { det: DetectorState; events: DetectionEvent[] } {
  const det = prev;
  const events: DetectionEvent[] = [];
  const nominal = s.voltage.nominalV;
  const dev = Math.abs(voltageV - nominal) / nominal;
  if (dev > s.voltage.tolerance) {
    det.vRun += 1;
    if (det.vRun >= s.voltage.minConsecutive) {
      det.voltage = true;
      events.push(
        meterEvent(meter, 'voltage', 'firing', ts, {
          value: voltageV,
          expected: nominal,
          score: dev / s.voltage.tolerance,
          severity: dev > s.voltage.majorTolerance ? 'major' : 'warning',
          reason: `${voltageV.toFixed(1)} V, ${pct(dev)} ${voltageV < nominal ? 'below' : 'above'} nominal ${nominal} V for ${det.vRun} reads`,
        }),
      );
    }
  } else {
    det.vRun = 0;
    if (det.voltage) {
      det.voltage = false;
      events.push(
        meterEvent(meter, 'voltage', 'clear', ts, {
          value: voltageV,
          expected: nominal,
          score: dev / s.voltage.tolerance,
          severity: 'info',
          reason: `${voltageV.toFixed(1)} V, back within ±${pct(s.voltage.tolerance)}`,
        }),
      );
    }
  }
  return { det, events };
}
