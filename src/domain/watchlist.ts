import type { Quality } from '../contracts/billing.js';
import type { WatchEntry, WatchReason } from '../contracts/insights.js';
import type { CustomerClass } from '../contracts/registry.js';
import { addMonths } from './profiles.js';

/**
 * The watch-list: customers whose monthly energy fell by more than `dropShare` over 3 months with no known reason.
 * Pure: the caller reads the stored profiles of the 18 months up to the month asked about.
 *
 * The rule, for month M: the baseline is the average energy of M-5, M-4, M-3; a customer falls when each of M-2,
 * M-1, M is below the baseline and M is more than `dropShare` below it (drop = 1 − E(M) / baseline > dropShare). All
 * six months must have a profile. A fall is explained, and not listed, when:
 * - `data-quality`: one of the six months is estimated or incomplete (a communications gap, not consumption);
 * - `class-trend`: net of the rest of its class (the same six months summed over the class's other customers that have
 *   all six, none incomplete), the customer's drop is at most dropShare:
 *   1 − (E(M) / baseline) / (rest E(M) / rest baseline) ≤ dropShare;
 * - `seasonal`: net of its own same six months a year earlier (all present and not incomplete), likewise;
 * - `meter-exchange`: its meters changed within the six months, or a month had more than one meter;
 * - `tariff-or-class-change`: its tariff or class changed within the six months.
 * Demand-response participation is not looked at. `kind` is `sudden` when one step (baseline → M-2 → M-1 → M) makes
 * at least two thirds of the fall, `gradual` otherwise. Churn and theft look the same in energy: `suspected` says so.
 */

export interface WatchMonth {
  energyWh: number;
  quality: Quality;
  customerClass: CustomerClass;
  tariff: string;
  meters: readonly string[];
}

export interface WatchInput {
  month: string;
  dropShare: number;
  /** customerId → month (YYYY-MM) → that month's profile. */
  history: ReadonlyMap<string, ReadonlyMap<string, WatchMonth>>;
}

/** The months a watch-list for `month` reads: the six it judges and the same six a year earlier. */
export function watchMonths(month: string): { baseline: string[]; recent: string[]; lastYear: string[] } {
  const six = [-5, -4, -3, -2, -1, 0].map((n) => addMonths(month, n));
  return { baseline: six.slice(0, 3), recent: six.slice(3), lastYear: six.map((m) => addMonths(m, -12)) };
}

const r4 = (v: number): number => Math.round(v * 10_000) / 10_000;
const mean = (xs: readonly number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;

function monthsOf(h: ReadonlyMap<string, WatchMonth> | undefined, months: readonly string[]): WatchMonth[] | undefined {
  if (h === undefined) return undefined;
  const out: WatchMonth[] = [];
  for (const m of months) {
    const v = h.get(m);
    if (v === undefined) return undefined;
    out.push(v);
  }
  return out;
}

/** latest / average of the first three, as a ratio; undefined when the baseline has no energy. */
function ratioOf(energies: readonly number[]): number | undefined {
  const base = mean(energies.slice(0, 3));
  const last = energies[energies.length - 1];
  return base > 0 && last !== undefined ? last / base : undefined;
}

export function watchlist(input: WatchInput): { items: WatchEntry[]; explained: WatchEntry[] } {
  const { baseline, recent, lastYear } = watchMonths(input.month);
  const six = [...baseline, ...recent];

  // The class's energy over the six months: customers with all six and none incomplete, by their latest class.
  const inClass = (ms: readonly WatchMonth[] | undefined): ms is WatchMonth[] => ms !== undefined && ms.every((m) => m.quality !== 'incomplete');
  const classSums = new Map<CustomerClass, number[]>();
  const classCounts = new Map<CustomerClass, number>();
  for (const h of input.history.values()) {
    const ms = monthsOf(h, six);
    const cls = ms?.[5]?.customerClass;
    if (!inClass(ms) || cls === undefined) continue;
    classCounts.set(cls, (classCounts.get(cls) ?? 0) + 1);
    const sums = classSums.get(cls) ?? [0, 0, 0, 0, 0, 0];
    ms.forEach((m, i) => {
      sums[i] = (sums[i] ?? 0) + m.energyWh;
    });
    classSums.set(cls, sums);
  }

  const items: WatchEntry[] = [];
  const explained: WatchEntry[] = [];
  for (const [customerId, h] of input.history) {
    const ms = monthsOf(h, six);
    const latest = ms?.[5];
    if (ms === undefined || latest === undefined) continue;
    const energies = ms.map((m) => m.energyWh);
    const base = mean(energies.slice(0, 3));
    if (base <= 0) continue;
    // Compared as reported (4 decimals): a fall of exactly dropShare is not more than it.
    const drop = r4(1 - latest.energyWh / base);
    if (!(drop > input.dropShare) || !energies.slice(3).every((e) => e < base)) continue;

    const own = latest.energyWh / base;
    // The rest of the class: without the customer itself, which would otherwise explain its own fall.
    const sums = classSums.get(latest.customerClass) ?? [];
    const counted = inClass(ms);
    const others = (classCounts.get(latest.customerClass) ?? 0) - (counted ? 1 : 0);
    const classRatio = others <= 0 ? undefined : ratioOf(sums.map((v, i) => v - (counted ? (energies[i] ?? 0) : 0)));
    const ly = monthsOf(h, lastYear);
    const lyRatio = ly === undefined || ly.some((m) => m.quality === 'incomplete') ? undefined : ratioOf(ly.map((m) => m.energyWh));
    const net = (ratio: number | undefined): number | null => (ratio === undefined || ratio <= 0 ? null : r4(1 - own / ratio));
    const dropNetOfClass = net(classRatio);
    const dropNetOfLastYear = net(lyRatio);

    const reasons: WatchReason[] = [];
    if (ms.some((m) => m.quality !== 'actual')) reasons.push('data-quality');
    if (dropNetOfClass !== null && dropNetOfClass <= input.dropShare) reasons.push('class-trend');
    if (dropNetOfLastYear !== null && dropNetOfLastYear <= input.dropShare) reasons.push('seasonal');
    const meterSets = new Set(ms.map((m) => [...m.meters].sort().join(',')));
    if (meterSets.size > 1 || ms.some((m) => m.meters.length > 1)) reasons.push('meter-exchange');
    if (new Set(ms.map((m) => `${m.tariff}|${m.customerClass}`)).size > 1) reasons.push('tariff-or-class-change');

    const steps = [base - (energies[3] ?? 0), (energies[3] ?? 0) - (energies[4] ?? 0), (energies[4] ?? 0) - latest.energyWh];
    const fall = base - latest.energyWh;
    const entry: WatchEntry = {
      customerId,
      class: latest.customerClass,
      months: six.map((month, i) => ({ month, energyWh: energies[i] ?? 0, quality: ms[i]?.quality ?? 'incomplete' })),
      baselineWh: r4(base),
      latestWh: latest.energyWh,
      dropShare: drop,
      classChange: classRatio === undefined ? null : r4(classRatio - 1),
      dropNetOfClass,
      lastYearChange: lyRatio === undefined ? null : r4(lyRatio - 1),
      dropNetOfLastYear,
      kind: Math.max(...steps) * 3 >= fall * 2 ? 'sudden' : 'gradual',
      suspected: 'churn-or-theft',
      reasons,
    };
    (reasons.length === 0 ? items : explained).push(entry);
  }
  const order = (a: WatchEntry, b: WatchEntry) => b.dropShare - a.dropShare || (a.customerId < b.customerId ? -1 : 1);
  return { items: items.sort(order), explained: explained.sort(order) };
}
