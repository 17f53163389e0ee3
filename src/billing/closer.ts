import type { Logger } from 'pino';
import { DAILY_MEASUREMENT, PERIOD_MEASUREMENT, type CloseDayJob, type CloseMonthJob, type ClosePeriodJob, type RecomputeJob } from '../contracts/billing.js';
import { latestPerStart, readFields, type StoredRead } from '../shared/billing-store.js';
import type { BillingConfig } from '../contracts/config-billing.js';
import { computeDailyRead } from '../domain/billing.js';
import { assessRead, combineReads, periodOf, periodWindow } from '../domain/billing-period.js';
import { dayWindow, localDay, nextDay, previousDay } from '../domain/local-time.js';
import { isLastDayOfMonth, type CompiledTiers } from '../domain/profiles.js';
import type { TariffOffers } from '../domain/tariff-pricing.js';
import { tariffFor, type Tariffs } from '../domain/tariffs.js';
import { lp } from '../shared/line-protocol.js';
import { profileLine } from '../shared/profile-store.js';
import type { MeterInfo } from '../shared/registry.js';
import { monthProfiles, type BilledMeter } from './month-close.js';
import type { BillingSource } from './source.js';
import type { BillingState } from './state.js';

/** The registry as billing needs it. */
export interface MeterDirectory {
  allMeterIds(): Promise<string[]>;
  getMeters(ids: string[]): Promise<Map<string, MeterInfo>>;
}

export interface BillingDeps {
  source: BillingSource;
  writer: { write(lines: string[]): void; flush(): Promise<void> };
  state: BillingState;
  meters: MeterDirectory;
  tariffs: Tariffs;
  cfg: BillingConfig;
  enqueueCloseDay(job: CloseDayJob): Promise<void>;
  enqueueClosePeriod(job: ClosePeriodJob): Promise<void>;
  log: Logger;
  /** Wall clock, only to stamp `computed_at` (which of two stored reads is newer). */
  now(): number;
  /** Customer profiles per calendar month; without it no month is profiled (tests of days and periods alone). */
  insights?: InsightsDeps;
}

export interface InsightsDeps {
  tiers: CompiledTiers;
  offers: TariffOffers;
  enqueueCloseMonth(job: CloseMonthJob): Promise<void>;
}

export interface CloseResult {
  meters: number;
  written: number;
}

/** Longest interval the registry allows (60 min): how far before a day its first interval may start. */
const MAX_INTERVAL_MS = 60 * 60_000;

/**
 * Closes local days as the watermark passes them, closes periods after their last day, and recomputes a
 * meter's day (and closed period) when late data arrives. Every write is idempotent (same tags + time),
 * so a retried or repeated job only rewrites the same points.
 */
export class BillingCloser {
  constructor(private readonly d: BillingDeps) {}

  private timezones(): string[] {
    return [...new Set([...this.d.tariffs.byName.values()].map((t) => t.timezone))].sort();
  }

  private billed(info: MeterInfo): BilledMeter {
    return {
      meterId: info.meterId,
      customerId: info.customerId,
      customerClass: info.class,
      tariff: tariffFor(this.d.tariffs, info.tariff),
      durationMs: info.intervalMinutes * 60_000,
    };
  }

  /** Meters billed in `timezone`: registered ones and any with interval data (registry defaults apply). */
  private async metersIn(timezone: string, extra: readonly string[] = []): Promise<BilledMeter[]> {
    const [registered, withData] = await Promise.all([this.d.meters.allMeterIds(), this.d.source.metersWithIntervals()]);
    const ids = [...new Set([...registered, ...withData, ...extra])].sort();
    const out: BilledMeter[] = [];
    for (let i = 0; i < ids.length; i += 1000) {
      const infos = await this.d.meters.getMeters(ids.slice(i, i + 1000));
      for (const info of infos.values()) {
        const m = this.billed(info);
        if (m.tariff.timezone === timezone) out.push(m);
      }
    }
    return out;
  }

  /** The next day the repeatable job should close in each zone, when the watermark has passed its end. */
  async tick(): Promise<{ timezone: string; day: string }[]> {
    await this.reprofileDirty();
    const wm = await this.d.state.watermark();
    if (wm === undefined) return [];
    const scheduled: { timezone: string; day: string }[] = [];
    let earliest: number | undefined | null = null;
    for (const timezone of this.timezones()) {
      const last = await this.d.state.lastClosedDay(timezone);
      let day: string;
      if (last !== undefined) {
        day = nextDay(last);
        await this.ensurePeriodClosed(timezone, last);
        await this.ensureMonthProfiled(timezone, last);
      } else if (this.d.cfg.close.firstDay !== '') {
        day = this.d.cfg.close.firstDay;
      } else {
        if (earliest === null) earliest = await this.d.source.earliestInterval();
        if (earliest === undefined) continue;
        day = localDay(timezone, earliest);
      }
      if (dayWindow(timezone, day).endMs <= wm) {
        await this.d.enqueueCloseDay({ timezone, day });
        scheduled.push({ timezone, day });
      }
    }
    return scheduled;
  }

  /** Re-schedules the closing of the last finished period if a failure left it open. */
  private async ensurePeriodClosed(timezone: string, lastClosed: string): Promise<void> {
    const startDay = this.d.cfg.periodStartDay;
    const period = periodOf(lastClosed, startDay);
    if (periodOf(nextDay(lastClosed), startDay) === period) return;
    if (typeof (await this.d.state.periodState(timezone, period)) !== 'number') await this.d.enqueueClosePeriod({ timezone, period });
  }

  /** Months whose days late data rewrote since they were profiled (or while they were): profiled again. */
  private async reprofileDirty(): Promise<void> {
    if (this.d.insights === undefined) return;
    for (const m of await this.d.state.dirtyMonths()) await this.d.insights.enqueueCloseMonth(m);
  }

  /** Re-schedules the profiles of the last finished calendar month if a failure left them unwritten. */
  private async ensureMonthProfiled(timezone: string, lastClosed: string): Promise<void> {
    if (this.d.insights === undefined || !isLastDayOfMonth(lastClosed)) return;
    const month = lastClosed.slice(0, 7);
    if (typeof (await this.d.state.monthState(timezone, month)) !== 'number') await this.d.insights.enqueueCloseMonth({ timezone, month });
  }

  private async dailyLines(meters: readonly BilledMeter[], day: string, timezone: string): Promise<string[]> {
    const w = dayWindow(timezone, day);
    const durations = new Map(meters.map((m) => [m.meterId, m.durationMs]));
    const [intervals, atStart, atEnd] = await Promise.all([
      this.d.source.intervals(durations, w.startMs - MAX_INTERVAL_MS, w.endMs),
      this.d.source.readsAt(
        meters.map((m) => m.meterId),
        w.startMs,
      ),
      this.d.source.readsAt(
        meters.map((m) => m.meterId),
        w.endMs,
      ),
    ]);
    const lines: string[] = [];
    const now = this.d.now();
    for (const m of meters) {
      const ivs = intervals.get(m.meterId) ?? [];
      if (!ivs.some((iv) => iv.start < w.endMs && iv.start + iv.durationMs > w.startMs)) continue;
      const actual = new Set<number>();
      if (atStart.has(m.meterId)) actual.add(w.startMs);
      if (atEnd.has(m.meterId)) actual.add(w.endMs);
      const read = computeDailyRead({ meterId: m.meterId, day, tariff: m.tariff, intervals: ivs, actualReadsAt: actual });
      const assessment = assessRead(read, this.d.cfg.quality);
      lines.push(lp(DAILY_MEASUREMENT, { meter: m.meterId, customer: m.customerId, tariff: m.tariff.name }, readFields(read, assessment, now), read.fromMs));
    }
    return lines;
  }

  /** Computes and stores every meter's read of one local day, marks the day closed, chains the next. */
  async closeDay(job: CloseDayJob): Promise<CloseResult> {
    const { timezone, day } = job;
    const meters = await this.metersIn(timezone);
    let written = 0;
    for (let i = 0; i < meters.length; i += this.d.cfg.close.meterChunk) {
      const lines = await this.dailyLines(meters.slice(i, i + this.d.cfg.close.meterChunk), day, timezone);
      this.d.writer.write(lines);
      written += lines.length;
    }
    // Durable before the day counts as closed: a crash here only repeats the day.
    await this.d.writer.flush();
    await this.d.state.markDayClosed(timezone, day);
    this.d.log.info({ timezone, day, meters: meters.length, written }, 'day closed');

    const startDay = this.d.cfg.periodStartDay;
    const next = nextDay(day);
    if (periodOf(next, startDay) !== periodOf(day, startDay)) await this.d.enqueueClosePeriod({ timezone, period: periodOf(day, startDay) });
    if (this.d.insights !== undefined && isLastDayOfMonth(day)) await this.d.insights.enqueueCloseMonth({ timezone, month: day.slice(0, 7) });
    const wm = await this.d.state.watermark();
    if (wm !== undefined && dayWindow(timezone, next).endMs <= wm) await this.d.enqueueCloseDay({ timezone, day: next });
    return { meters: meters.length, written };
  }

  private periodLines(meters: readonly BilledMeter[], period: string, stored: readonly StoredRead[]): string[] {
    const window = periodWindow(period, this.d.cfg.periodStartDay);
    const byMeter = new Map<string, StoredRead[]>();
    for (const s of latestPerStart(stored)) {
      const list = byMeter.get(s.read.meterId) ?? [];
      list.push(s);
      byMeter.set(s.read.meterId, list);
    }
    const lines: string[] = [];
    const now = this.d.now();
    for (const m of meters) {
      const days = byMeter.get(m.meterId);
      if (days === undefined || days.length === 0) continue;
      const read = combineReads(
        m.meterId,
        m.tariff,
        window,
        days.map((s) => s.read),
      );
      const assessment = assessRead(read, this.d.cfg.quality);
      const fields = { ...readFields(read, assessment, now), period };
      lines.push(lp(PERIOD_MEASUREMENT, { meter: m.meterId, customer: m.customerId, tariff: m.tariff.name }, fields, read.fromMs));
    }
    return lines;
  }

  private async periodLinesFor(meters: readonly BilledMeter[], timezone: string, period: string): Promise<string[]> {
    const window = periodWindow(period, this.d.cfg.periodStartDay);
    const from = dayWindow(timezone, window.fromDay).startMs;
    const to = dayWindow(timezone, window.toDay).startMs;
    const stored = await this.d.source.stored(
      DAILY_MEASUREMENT,
      meters.map((m) => m.meterId),
      from,
      to,
    );
    return this.periodLines(meters, period, stored);
  }

  /** Combines the stored daily reads of every meter into period reads. */
  async closePeriod(job: ClosePeriodJob): Promise<CloseResult> {
    const { timezone, period } = job;
    // Marked before reading the days: a recompute that finds the mark recomputes the period itself; one that
    // does not wrote its day before this job reads it.
    await this.d.state.markPeriod(timezone, period, 'closing');
    const meters = await this.metersIn(timezone, await this.d.source.metersWithStored(DAILY_MEASUREMENT));
    let written = 0;
    for (let i = 0; i < meters.length; i += this.d.cfg.close.meterChunk) {
      const lines = await this.periodLinesFor(meters.slice(i, i + this.d.cfg.close.meterChunk), timezone, period);
      this.d.writer.write(lines);
      written += lines.length;
    }
    await this.d.writer.flush();
    await this.d.state.markPeriod(timezone, period, this.d.now());
    this.d.log.info({ timezone, period, meters: meters.length, written }, 'period closed');
    return { meters: meters.length, written };
  }

  /**
   * Late data for a meter's day: rewrite its daily reads, then its period reads if closed. The stream worker names
   * the day in the tariff's zone; the neighbouring days are recomputed too (jobs queued by older workers named it in
   * the process zone), each only once the watermark has passed its end (a day still open is left to closeDay).
   */
  async recompute(job: RecomputeJob): Promise<CloseResult> {
    const infos = await this.d.meters.getMeters([job.meterId]);
    const info = infos.get(job.meterId);
    if (info === undefined) return { meters: 0, written: 0 };
    const m = this.billed(info);
    const timezone = m.tariff.timezone;
    const wm = (await this.d.state.watermark()) ?? -Infinity;
    const days = [previousDay(job.day), job.day, nextDay(job.day)].filter((d) => dayWindow(timezone, d).endMs <= wm);
    let written = 0;
    const periods = new Set<string>();
    const months = new Set<string>();
    for (const day of days) {
      const lines = await this.dailyLines([m], day, timezone);
      this.d.writer.write(lines);
      written += lines.length;
      if (lines.length > 0) periods.add(periodOf(day, this.d.cfg.periodStartDay));
      if (lines.length > 0) months.add(day.slice(0, 7));
    }
    await this.d.writer.flush();
    await this.reprofile(timezone, months);
    for (const period of periods) {
      if ((await this.d.state.periodState(timezone, period)) === undefined) continue;
      const lines = await this.periodLinesFor([m], timezone, period);
      this.d.writer.write(lines);
      written += lines.length;
    }
    await this.d.writer.flush();
    this.d.log.debug({ meterId: job.meterId, days, written }, 'recomputed');
    return { meters: 1, written };
  }

  /**
   * Months already profiled (or being profiled) are profiled again after a recompute rewrote their days: marked dirty
   * first, so a close running now fails its finish and is retried with the rewritten day.
   */
  private async reprofile(timezone: string, months: Iterable<string>): Promise<void> {
    const insights = this.d.insights;
    if (insights === undefined) return;
    for (const month of months) {
      if ((await this.d.state.monthState(timezone, month)) === undefined) continue;
      await this.d.state.markMonth(timezone, month, 'dirty');
      await insights.enqueueCloseMonth({ timezone, month });
    }
  }

  /**
   * Every customer's profile of a calendar month in one zone (src/billing/month-close.ts), written as
   * `customer_profile` points. Marked 'closing' before reading; a recompute meanwhile marks it 'dirty': the close
   * still finishes and writes (every customer but the late one is current), and the month stays 'dirty' for the
   * tick to run it once more. So a zone whose late data keeps coming (a large fleet) still gets its profiles written,
   * one run after another, instead of failing every run that late data overlaps.
   */
  async closeMonth(job: CloseMonthJob): Promise<CloseResult> {
    const { timezone, month } = job;
    const insights = this.d.insights;
    if (insights === undefined) throw new Error('closeMonth needs the insights dependencies');
    await this.d.state.markMonth(timezone, month, 'closing');
    const meters = await this.metersIn(timezone, await this.d.source.metersWithStored(DAILY_MEASUREMENT));
    const profiles = await monthProfiles(
      { source: this.d.source, quality: this.d.cfg.quality, offers: insights.offers, tiers: insights.tiers, meterChunk: this.d.cfg.close.meterChunk },
      meters,
      timezone,
      month,
    );
    const now = this.d.now();
    this.d.writer.write(profiles.map((p) => profileLine(p, now)));
    await this.d.writer.flush();
    const current = await this.d.state.finishMonth(timezone, month, now);
    this.d.log.info(
      { timezone, month, meters: meters.length, customers: profiles.length, current },
      current ? 'month profiled' : 'month profiled; late data meanwhile, it runs again',
    );
    return { meters: meters.length, written: profiles.length };
  }
}
