import { CalendarClock } from './profiles.js';
import type { MarkInput } from './score-intervals.js';
import { median } from 'simple-statistics';

/**
 * The yardstick, to calibrate how hard a scenario is: per meter and slot of the week (local time), the
 * median and MAD of that slot's last `weeks` values; an interval is flagged when it lies more than `mads` MADs
 * from the median (once the slot has `minHistory` values: 8 weeks, as the issue ran it). On real, human-labelled commercial buildings it reaches a tolerance
 * F1 of 0.59, so a realistic scenario should leave it near there. Naive on purpose: flagged values still teach.
 */
export class ReferenceDetector {
  readonly marks: MarkInput[] = [];
  private readonly meters = new Map<string, { lastTs: number; lastWh: number; slots: Map<number, number[]> }>();
  private readonly clock: CalendarClock;

  constructor(
    zone: string,
    private readonly opts = { weeks: 8, mads: 8, minHistory: 8 },
  ) {
    this.clock = new CalendarClock(zone);
  }

  /** A register read (ts = interval end); out-of-order and repeated reads are ignored, gaps start over. */
  read(meterId: string, ts: number, importWh: number, intervalMs: number): void {
    const m = this.meters.get(meterId) ?? { lastTs: Number.NaN, lastWh: 0, slots: new Map<number, number[]>() };
    this.meters.set(meterId, m);
    if (ts <= m.lastTs) return;
    const contiguous = ts - m.lastTs === intervalMs;
    const wh = importWh - m.lastWh;
    m.lastTs = ts;
    m.lastWh = importWh;
    if (!contiguous || wh < 0) return;
    const start = ts - intervalMs;
    const cal = this.clock.at(start);
    const slot = (cal.weekday - 1) * 1440 + Math.round(cal.hour * 60);
    const hist = m.slots.get(slot) ?? [];
    if (hist.length >= this.opts.minHistory) {
      const med = hist.length === 0 ? 0 : median(hist);
      const mad = Math.max(1, hist.length === 0 ? 0 : median(hist.map((v) => Math.abs(v - med))));
      if (Math.abs(wh - med) > this.opts.mads * mad) this.marks.push({ meterId, start, end: ts, type: 'reference' });
    }
    hist.push(wh);
    if (hist.length > this.opts.weeks) hist.shift();
    m.slots.set(slot, hist);
  }
}
