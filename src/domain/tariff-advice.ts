import type { CustomerClass } from '../contracts/registry.js';
import { IANAZone } from 'luxon';
import { dayWindow, daysBetween } from './local-time.js';
import {
  billOf,
  formatMinor,
  MICRO,
  roundHalfUp,
  safe,
  type Bill,
  type TariffOffer,
  type TariffOffers,
  type TariffPricing,
  type Usage,
  usageOf,
} from './tariff-pricing.js';
import type { BillingInterval } from './billing.js';
import { tariffFor } from './tariffs.js';

/**
 * The tariff advisor: what a customer's actual intervals over [from, to) would cost on their current tariff and on
 * every other tariff they may take, and what moving a share of peak-band energy to the valley band would save.
 * Pure: the caller fetches the intervals; the energy per band and the bills come from tariff-pricing.ts (exact
 * money; the rounding rule is there).
 */

export interface PeakShift {
  share: number;
  fromBand: string;
  toBand: string;
  movedWh: number;
  usage: Usage;
}

/**
 * `share` (0–1, taken to 6 decimals) of the energy in the tariff's peak band (its most expensive) moved to its valley
 * band (its cheapest); moved Wh rounded half-up to a whole Wh. Demand is left as measured: where in the valley the
 * energy lands is not known. A tariff whose bands all cost the same moves nothing.
 */
export function shiftPeakToValley(usage: Usage, pricing: TariffPricing, share: number): PeakShift {
  if (!Number.isFinite(share) || share < 0 || share > 1) throw new RangeError(`shift share must be within 0-1, got ${share}`);
  const fromBand = pricing.peakBand;
  const toBand = pricing.valleyBand;
  const peakWh = Math.max(0, usage.bands[fromBand] ?? 0);
  const ppm = BigInt(Math.round(share * 1_000_000));
  const movedWh = fromBand === toBand ? 0 : safe(roundHalfUp(BigInt(peakWh) * ppm, MICRO));
  const bands = { ...usage.bands };
  if (movedWh > 0) {
    bands[fromBand] = peakWh - movedWh;
    bands[toBand] = (bands[toBand] ?? 0) + movedWh;
  }
  return { share, fromBand, toBand, movedWh, usage: { ...usage, bands } };
}

// ---- advice ----

export interface AdviceInput {
  offers: TariffOffers;
  customerClass: CustomerClass;
  /** The registry's tariff name; unknown or undefined: the default tariff, as billing reads do (`tariffFor`). */
  currentTariff: string | undefined;
  /** The customer's intervals around [from, to) (those outside are ignored), any order. */
  intervals: readonly BillingInterval[];
  /** Local days YYYY-MM-DD, `to` exclusive. */
  from: string;
  to: string;
  /** IANA zone of `from`/`to` and of the standing-charge days; default the current tariff's zone. */
  timezone?: string;
  /** 0–1: also price moving this share of each tariff's peak-band energy to its valley band. */
  shiftShare?: number;
}

export interface ShiftOutcome {
  share: number;
  fromBand: string;
  toBand: string;
  movedWh: number;
  totalMinor: number;
  total: string;
  /** Against the current tariff without the shift (positive = cheaper); null when that is not priced. */
  savingMinor: number | null;
  saving: string | null;
  /** Against the same tariff without the shift: what the shift alone saves. */
  shiftSavingMinor: number;
  shiftSaving: string;
}

export interface TariffOption {
  tariff: string;
  current: boolean;
  /** False only for a current tariff the customer's class may no longer take. */
  eligible: boolean;
  currency: string;
  amountMinor: number;
  amount: string;
  /** Current tariff's total minus this one's (positive = cheaper); null when the current tariff is not priced. */
  savingMinor: number | null;
  saving: string | null;
  bill: Bill;
  shift?: ShiftOutcome;
}

export type ExclusionReason = 'class' | 'unpriced' | 'currency';

export interface TariffAdvice {
  customerClass: CustomerClass;
  /** The tariff the customer is on (the default one when the registry names an unknown tariff). */
  currentTariff: string;
  from: string;
  to: string;
  timezone: string;
  fromMs: number;
  toMs: number;
  days: number;
  intervals: number;
  /** Estimated (not measured) intervals among them: included in every bill, flagged here. */
  estimatedIntervals: number;
  coveredMs: number;
  totalWh: number;
  maxDemandW: number | null;
  /** Cheapest first (ties by name); only the current tariff's currency, unless it is not priced (then by currency first). */
  options: TariffOption[];
  /** Tariffs not offered, with why: the class may not take them, they have no prices, or another currency. */
  excluded: { tariff: string; reason: ExclusionReason }[];
  shiftShare: number | null;
}

/** Bills the customer's intervals over [from, to) on the current tariff and on every tariff their class may take. */
export function adviseTariffs(input: AdviceInput): TariffAdvice {
  const { offers } = input;
  const current = tariffFor(offers.tariffs, input.currentTariff);
  const timezone = input.timezone ?? current.timezone;
  if (!IANAZone.isValidZone(timezone)) throw new RangeError(`unknown IANA time zone "${timezone}"`);
  const fromMs = dayWindow(timezone, input.from).startMs;
  const toMs = dayWindow(timezone, input.to).startMs;
  if (toMs <= fromMs) throw new RangeError(`empty window: "${input.from}" to "${input.to}" (to is exclusive)`);
  const days = daysBetween(input.from, input.to).length;
  const share = input.shiftShare;
  if (share !== undefined && (!Number.isFinite(share) || share < 0 || share > 1)) throw new RangeError(`shift share must be within 0-1, got ${share}`);

  const currentPricing = offers.byName.get(current.name)?.pricing ?? null;
  const excluded: TariffAdvice['excluded'] = [];
  const priced: { offer: TariffOffer; pricing: TariffPricing; isCurrent: boolean; eligible: boolean }[] = [];
  for (const [name, offer] of offers.byName) {
    const isCurrent = name === current.name;
    const eligible = offer.eligibleClasses.has(input.customerClass);
    if (!eligible && !isCurrent) excluded.push({ tariff: name, reason: 'class' });
    else if (offer.pricing === null) excluded.push({ tariff: name, reason: 'unpriced' });
    else if (currentPricing !== null && offer.pricing.currency !== currentPricing.currency) excluded.push({ tariff: name, reason: 'currency' });
    else priced.push({ offer, pricing: offer.pricing, isCurrent, eligible });
  }

  const bills = priced.map((p) => {
    const usage = usageOf(p.offer.tariff, input.intervals, fromMs, toMs);
    const bill = billOf(p.offer.tariff.name, p.pricing, usage, days);
    const shifted = share === undefined ? undefined : shiftPeakToValley(usage, p.pricing, share);
    return { ...p, usage, bill, shifted, shiftedBill: shifted === undefined ? undefined : billOf(p.offer.tariff.name, p.pricing, shifted.usage, days) };
  });
  const base = bills.find((b) => b.isCurrent)?.bill;
  const savingAgainst = (totalMinor: number, d: number): { savingMinor: number | null; saving: string | null } =>
    base === undefined
      ? { savingMinor: null, saving: null }
      : { savingMinor: base.totalMinor - totalMinor, saving: formatMinor(base.totalMinor - totalMinor, d) };

  const options: TariffOption[] = bills.map((b) => {
    const d = b.pricing.minorDigits;
    const option: TariffOption = {
      tariff: b.offer.tariff.name,
      current: b.isCurrent,
      eligible: b.eligible,
      currency: b.pricing.currency,
      amountMinor: b.bill.totalMinor,
      amount: b.bill.total,
      ...savingAgainst(b.bill.totalMinor, d),
      bill: b.bill,
    };
    if (b.shifted !== undefined && b.shiftedBill !== undefined) {
      const own = b.bill.totalMinor - b.shiftedBill.totalMinor;
      option.shift = {
        share: b.shifted.share,
        fromBand: b.shifted.fromBand,
        toBand: b.shifted.toBand,
        movedWh: b.shifted.movedWh,
        totalMinor: b.shiftedBill.totalMinor,
        total: b.shiftedBill.total,
        ...savingAgainst(b.shiftedBill.totalMinor, d),
        shiftSavingMinor: own,
        shiftSaving: formatMinor(own, d),
      };
    }
    return option;
  });
  options.sort((a, b) => (a.currency < b.currency ? -1 : a.currency > b.currency ? 1 : a.amountMinor - b.amountMinor || (a.tariff < b.tariff ? -1 : 1)));

  // Counts and demand do not depend on the tariff; the current tariff's usage gives them (and its total Wh).
  const counts = bills.find((b) => b.isCurrent)?.usage ?? usageOf(current, input.intervals, fromMs, toMs);
  return {
    customerClass: input.customerClass,
    currentTariff: current.name,
    from: input.from,
    to: input.to,
    timezone,
    fromMs,
    toMs,
    days,
    intervals: counts.intervals,
    estimatedIntervals: counts.estimatedIntervals,
    coveredMs: counts.coveredMs,
    totalWh: counts.totalWh,
    maxDemandW: counts.maxDemandW,
    options,
    excluded,
    shiftShare: share ?? null,
  };
}
