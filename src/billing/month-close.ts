import { DAILY_MEASUREMENT } from '../contracts/billing.js';
import type { MeterRead } from '../domain/billing.js';
import type { QualityConfig } from '../domain/billing-period.js';
import { activeMeter, customerIntervals } from '../domain/customer-load.js';
import { dayWindow } from '../domain/local-time.js';
import {
  addMonths,
  adviceSummary,
  assignSegments,
  computeProfile,
  monthDays,
  type CompiledTiers,
  type MonthProfile,
  type ProfileCore,
} from '../domain/profiles.js';
import { adviseTariffs } from '../domain/tariff-advice.js';
import type { TariffOffers } from '../domain/tariff-pricing.js';
import type { Tariff } from '../domain/tariffs.js';
import type { CustomerClass } from '../contracts/registry.js';
import { latestPerStart } from '../shared/billing-store.js';
import type { BillingSource } from './source.js';

/** A meter as billing sees it: its customer, class and tariff from the registry, its interval length. */
export interface BilledMeter {
  meterId: string;
  customerId: string;
  customerClass: CustomerClass;
  tariff: Tariff;
  durationMs: number;
}

export interface MonthInputs {
  source: BillingSource;
  quality: QualityConfig;
  offers: TariffOffers;
  tiers: CompiledTiers;
  /** Meters per InfluxDB query. */
  meterChunk: number;
}

/** Longest interval the registry allows (60 min): how far before the month its first interval may start. */
const MAX_INTERVAL_MS = 60 * 60_000;

/** Customers (sorted by id) in groups of about `chunk` meters. */
function customerChunks(meters: readonly BilledMeter[], chunk: number): BilledMeter[][][] {
  const byCustomer = new Map<string, BilledMeter[]>();
  for (const m of meters) byCustomer.set(m.customerId, [...(byCustomer.get(m.customerId) ?? []), m]);
  const out: BilledMeter[][][] = [];
  let cur: BilledMeter[][] = [];
  let size = 0;
  for (const id of [...byCustomer.keys()].sort()) {
    const list = byCustomer.get(id) ?? [];
    if (size > 0 && size + list.length > chunk) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(list);
    size += list.length;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * Every customer's profile for calendar month `month` of `timezone`: the stored daily reads of its meters, its summed
 * intervals (coincident demand, tariff advice), its stored profiles of the month before and a year before (changes),
 * then segments over all of them. Customers without a daily read in the month get none.
 */
export async function monthProfiles(d: MonthInputs, meters: readonly BilledMeter[], timezone: string, month: string): Promise<MonthProfile[]> {
  const { fromDay, toDay } = monthDays(month);
  const fromMs = dayWindow(timezone, fromDay).startMs;
  const toMs = dayWindow(timezone, toDay).startMs;
  const previous = addMonths(month, -1);
  const lastYear = addMonths(month, -12);
  const earlier = new Map((await d.source.profiles([previous, lastYear])).map((p) => [`${p.customerId}|${p.month}`, p]));

  const cores: ProfileCore[] = [];
  // A month of intervals per meter is ~30 days of them: fewer meters per query than a day's close reads.
  for (const customers of customerChunks(meters, Math.max(1, Math.floor(d.meterChunk / 8)))) {
    const all = customers.flat();
    const stored = latestPerStart(
      await d.source.stored(
        DAILY_MEASUREMENT,
        all.map((m) => m.meterId),
        fromMs,
        toMs,
      ),
    );
    const daily = new Map<string, MeterRead[]>();
    for (const s of stored) daily.set(s.read.meterId, [...(daily.get(s.read.meterId) ?? []), s.read]);
    const intervals = await d.source.intervals(new Map(all.map((m) => [m.meterId, m.durationMs])), fromMs - MAX_INTERVAL_MS, toMs);

    for (const list of customers) {
      if (!list.some((m) => (daily.get(m.meterId)?.length ?? 0) > 0)) continue;
      // The meter with the latest daily read speaks for the customer (tariff, class).
      const active = activeMeter(list, (id) => (daily.get(id) ?? []).reduce((t, r) => Math.max(t, r.fromMs), -Infinity));
      if (active === undefined) continue;
      const longest = Math.max(...list.map((m) => m.durationMs));
      const load = customerIntervals(
        list.map((m) => intervals.get(m.meterId) ?? []),
        longest,
      );
      const advice = adviseTariffs({
        offers: d.offers,
        customerClass: active.customerClass,
        currentTariff: active.tariff.name,
        intervals: load,
        from: fromDay,
        to: toDay,
        timezone,
      });
      const energyOf = (m: string) => earlier.get(`${active.customerId}|${m}`);
      cores.push(
        computeProfile({
          customerId: active.customerId,
          customerClass: active.customerClass,
          tariff: active.tariff,
          month,
          meters: list.map((m) => ({ meterId: m.meterId, tariff: m.tariff, daily: daily.get(m.meterId) ?? [] })),
          intervals: load,
          quality: d.quality,
          previous: energyOf(previous),
          lastYear: energyOf(lastYear),
          advice: adviceSummary(advice),
        }),
      );
    }
  }
  return assignSegments(cores, d.tiers);
}
