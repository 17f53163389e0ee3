import { monthProfiles, type BilledMeter, type MonthInputs } from '../src/billing/month-close.js';
import { BillingConfig } from '../src/contracts/config-billing.js';
import { InsightsConfig } from '../src/contracts/config-insights.js';
import { TariffsConfigSchema } from '../src/contracts/config-tariffs.js';
import { computeDailyRead, type BillingInterval } from '../src/domain/billing.js';
import { assessRead } from '../src/domain/billing-period.js';
import { dayWindow } from '../src/domain/local-time.js';
import { compileTiers } from '../src/domain/profiles.js';
import { compileTariffOffers } from '../src/domain/tariff-pricing.js';
import { compileTariffs, tariffFor } from '../src/domain/tariffs.js';
import type { StoredRead } from '../src/shared/billing-store.js';
import { loadSection } from '../src/shared/config.js';
import { report, type BenchRow } from './lib.js';

/**
 * The billing role's month close without I/O: N residential customers × a 31-day month of 15-minute intervals on the
 * shipped residential-tou tariff (Europe/Madrid), their daily reads computed as the day close does, then every
 * customer's profile, tariff advice and segment (`monthProfiles`) from an in-memory source. What it gives is the
 * CPU a month close needs per customer beside reading InfluxDB (which reads the same intervals as the month's day
 * closes did). `npm run bench:month [-- N ...]`, default 1,000 and 5,000 customers.
 */

const sizes = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => Number.isInteger(n) && n > 0);
const cfg = loadSection('tariffs', TariffsConfigSchema, {});
const tariffs = compileTariffs(cfg, 'Europe/Madrid');
const offers = compileTariffOffers(cfg, tariffs);
const tiers = compileTiers(loadSection('insights', InsightsConfig, {}).segments);
const billing = loadSection('billing', BillingConfig, {});
const tariff = tariffFor(tariffs, 'residential-tou');
const zone = tariff.timezone;
const MONTH = '2026-03';
const FROM = dayWindow(zone, '2026-03-01').startMs;
const TO = dayWindow(zone, '2026-04-01').startMs;
const STEP = 15 * 60_000;

function fleet(n: number): { meters: BilledMeter[]; intervals: Map<string, BillingInterval[]> } {
  const meters: BilledMeter[] = [];
  const intervals = new Map<string, BillingInterval[]>();
  for (let i = 0; i < n; i++) {
    const meterId = `M${i}`;
    meters.push({ meterId, customerId: `C${i}`, customerClass: 'residential', tariff, durationMs: STEP });
    const list: BillingInterval[] = [];
    let registerWh = 1_000;
    for (let t = FROM - 3_600_000; t < TO; t += STEP) {
      const wh = 50 + ((i * 7 + t / STEP) % 40);
      registerWh += wh;
      list.push({ start: t, durationMs: STEP, wh, exportWh: 0, demandW: wh * 4, registerWh, estimated: false });
    }
    intervals.set(meterId, list);
  }
  return { meters, intervals };
}

function dailyReads(meters: readonly BilledMeter[], intervals: ReadonlyMap<string, BillingInterval[]>): Map<string, StoredRead[]> {
  const out = new Map<string, StoredRead[]>();
  for (const m of meters) {
    const reads: StoredRead[] = [];
    for (let d = 1; d <= 31; d++) {
      const day = `${MONTH}-${String(d).padStart(2, '0')}`;
      const read = computeDailyRead({ meterId: m.meterId, day, tariff, intervals: intervals.get(m.meterId) ?? [], actualReadsAt: new Set() });
      reads.push({ read, customerId: m.customerId, assessment: assessRead(read, billing.quality), computedAt: 1 });
    }
    out.set(m.meterId, reads);
  }
  return out;
}

function memorySource(intervals: ReadonlyMap<string, BillingInterval[]>, daily: ReadonlyMap<string, StoredRead[]>): MonthInputs['source'] {
  return {
    metersWithIntervals: async () => [...intervals.keys()],
    metersWithStored: async () => [...daily.keys()],
    earliestInterval: async () => FROM,
    intervals: async (durations) => new Map([...durations.keys()].map((id) => [id, intervals.get(id) ?? []])),
    readsAt: async () => new Set(),
    stored: async (_measurement, ids) => ids.flatMap((id) => daily.get(id) ?? []),
    profiles: async () => [],
  };
}

const rows: BenchRow[] = [];
for (const n of sizes.length > 0 ? sizes : [1_000, 5_000]) {
  const { meters, intervals } = fleet(n);
  let t0 = performance.now();
  const daily = dailyReads(meters, intervals);
  const dailyMs = performance.now() - t0;
  t0 = performance.now();
  const profiles = await monthProfiles(
    { source: memorySource(intervals, daily), quality: billing.quality, offers, tiers, meterChunk: billing.close.meterChunk },
    meters,
    zone,
    MONTH,
  );
  const monthMs = performance.now() - t0;
  if (profiles.length !== n) throw new Error(`${profiles.length} profiles for ${n} customers`);
  rows.push({
    case: `${n} customers`,
    customers: n,
    intervals_per_customer: intervals.get('M0')?.length ?? 0,
    day_closes_ms_per_customer_month: dailyMs / n,
    month_close_ms_per_customer: monthMs / n,
    month_close_s_per_million: (monthMs / n) * 1000,
  });
}
report('month-close', rows, { month: MONTH, tariff: tariff.name, timezone: zone, note: 'CPU only: the source is in memory' });
