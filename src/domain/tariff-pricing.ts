import { PRICE_PATTERN, type TariffsConfig } from '../contracts/config-tariffs.js';
import { CUSTOMER_CLASSES, type CustomerClass } from '../contracts/registry.js';
import { apportion } from './billing-apportion.js';
import type { BillingInterval } from './billing.js';
import { bandSegments, singleBand, TariffConfigError, type Tariff, type Tariffs } from './tariffs.js';

/**
 * Tariff prices and bills: a customer's energy per band over a window (split across band edges exactly as billing
 * reads split it: `apportion`, time-weighted, integer Wh) and what it costs on a priced tariff. Pure.
 *
 * Money is exact. Prices are decimal strings (at most 6 decimals) parsed to integer micro-units; a line's exact
 * amount is an integer in nano-units (Wh × micro-units per kWh, W × micro-units per kW, days × micro-units × 1000).
 * Rounding rule: each line of the bill — each band's energy, the standing charge, the demand charge — is rounded
 * half-up to the currency's minor unit (ISO 4217 digits: cents for EUR/USD/CNY) once per bill; the total is the sum
 * of the rounded lines, so a bill always adds up, and it is within half a minor unit per line of the exact total.
 * Savings are differences of rounded totals. Arithmetic is BigInt throughout; results are returned as safe integers
 * of minor units and as decimal strings.
 */

// ---- money ----

export const MICRO = 1_000_000n;
const PRICE_RE = new RegExp(PRICE_PATTERN);

/** A decimal price string ("0.132514") → integer micro-units of the currency (132514n); RangeError otherwise. */
export function parseMicro(price: string): bigint {
  if (!PRICE_RE.test(price)) throw new RangeError(`expected a decimal price with at most 6 decimals, got "${price}"`);
  const [int = '0', frac = ''] = price.split('.');
  return BigInt(int) * MICRO + BigInt(frac.padEnd(6, '0'));
}

/** n / d rounded half-up (x.5 goes up), for n ≥ 0 and d > 0. */
export function roundHalfUp(n: bigint, d: bigint): bigint {
  if (n < 0n || d <= 0n) throw new RangeError(`roundHalfUp: expected n >= 0 and d > 0, got ${n} / ${d}`);
  return (2n * n + d) / (2n * d);
}

/** Integer minor units → decimal string with the currency's digits: 12345 → "123.45", -5 → "-0.05". */
export function formatMinor(minor: bigint | number, digits: number): string {
  const v = BigInt(minor);
  const sign = v < 0n ? '-' : '';
  const abs = (v < 0n ? -v : v).toString();
  if (digits === 0) return `${sign}${abs}`;
  const padded = abs.padStart(digits + 1, '0');
  return `${sign}${padded.slice(0, -digits)}.${padded.slice(-digits)}`;
}

/** Nano-units (10^-9 of the currency) → minor units, half-up. */
function nanoToMinor(nano: bigint, digits: number): bigint {
  return roundHalfUp(nano, 10n ** BigInt(9 - digits));
}

export function safe(v: bigint): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new RangeError(`amount out of range: ${v}`);
  return n;
}

/** ISO 4217 minor-unit digits (2 for EUR, 0 for JPY, 3 for KWD), from the runtime's CLDR data. */
function currencyDigits(code: string, path: string): number {
  if (!Intl.supportedValuesOf('currency').includes(code)) throw new TariffConfigError(path, `unknown ISO 4217 currency "${code}"`);
  const digits = new Intl.NumberFormat('en', { style: 'currency', currency: code }).resolvedOptions().maximumFractionDigits ?? 2;
  // Prices carry 6 decimals; a minor unit finer than that could not be rounded to.
  if (digits > 6) throw new TariffConfigError(path, `currency "${code}" has ${digits} minor digits, at most 6 are supported`);
  return digits;
}

// ---- compiled offers ----

/** A tariff's prices, compiled. */
export interface TariffPricing {
  readonly currency: string;
  /** Decimal digits of the currency's minor unit. */
  readonly minorDigits: number;
  /** Price per kWh per band as configured (decimal strings), every band present. */
  readonly prices: Readonly<Record<string, string>>;
  /** The same in micro-units per kWh. */
  readonly microPerKwh: ReadonlyMap<string, bigint>;
  readonly fixedPerDay: string | null;
  readonly fixedMicroPerDay: bigint;
  readonly demandCharge: string | null;
  readonly demandMicroPerKw: bigint;
  /** The most expensive band per kWh (the first in band order on a tie): where a load shift moves energy from. */
  readonly peakBand: string;
  /** The cheapest band (the last on a tie): where it moves energy to. Equals peakBand when every band costs the same. */
  readonly valleyBand: string;
}

/** A tariff as the advisor offers it: its bands, who may take it and its prices (null: not priced). */
export interface TariffOffer {
  readonly tariff: Tariff;
  readonly eligibleClasses: ReadonlySet<CustomerClass>;
  readonly pricing: TariffPricing | null;
}

export interface TariffOffers {
  readonly tariffs: Tariffs;
  /** In config order. */
  readonly byName: ReadonlyMap<string, TariffOffer>;
}

function compilePricing(name: string, cfg: TariffsConfig, tariff: Tariff): TariffPricing | null {
  const at = `tariffs.${name}`;
  const t = cfg.tariffs[name];
  if (t === undefined) return null;
  if (t.prices === undefined) {
    if (t.fixedPerDay !== undefined) throw new TariffConfigError(`${at}.prices`, 'required with fixedPerDay');
    if (t.demandCharge !== undefined) throw new TariffConfigError(`${at}.prices`, 'required with demandCharge');
    return null;
  }
  const currency = t.currency ?? cfg.currency;
  if (currency === undefined) throw new TariffConfigError(`${at}.currency`, 'a currency is required with prices (here or tariffs-wide)');
  const minorDigits = currencyDigits(currency, t.currency !== undefined ? `${at}.currency` : 'currency');
  const parse = (price: string, path: string): bigint => {
    try {
      return parseMicro(price);
    } catch (err) {
      throw new TariffConfigError(path, err instanceof Error ? err.message : String(err));
    }
  };
  for (const band of Object.keys(t.prices)) {
    if (!tariff.bands.includes(band)) throw new TariffConfigError(`${at}.prices.${band}`, `"${band}" is not in bands`);
  }
  const prices: Record<string, string> = {};
  const microPerKwh = new Map<string, bigint>();
  for (const band of tariff.bands) {
    const price = t.prices[band];
    if (price === undefined) throw new TariffConfigError(`${at}.prices`, `no price for band "${band}"`);
    prices[band] = price;
    microPerKwh.set(band, parse(price, `${at}.prices.${band}`));
  }
  let peakBand = tariff.bands[0] ?? '';
  let valleyBand = peakBand;
  for (const band of tariff.bands) {
    const p = microPerKwh.get(band) ?? 0n;
    if (p > (microPerKwh.get(peakBand) ?? 0n)) peakBand = band;
    if (p <= (microPerKwh.get(valleyBand) ?? 0n)) valleyBand = band;
  }
  if (microPerKwh.get(peakBand) === microPerKwh.get(valleyBand)) valleyBand = peakBand;
  return {
    currency,
    minorDigits,
    prices,
    microPerKwh,
    fixedPerDay: t.fixedPerDay ?? null,
    fixedMicroPerDay: t.fixedPerDay === undefined ? 0n : parse(t.fixedPerDay, `${at}.fixedPerDay`),
    demandCharge: t.demandCharge ?? null,
    demandMicroPerKw: t.demandCharge === undefined ? 0n : parse(t.demandCharge, `${at}.demandCharge`),
    peakBand,
    valleyBand,
  };
}

/**
 * Prices and eligibility of every tariff of `cfg`, checked against the tariffs `compileTariffs` compiled from the same
 * config: every band priced and no other, a known currency, prices as decimals. Throws TariffConfigError naming the key.
 */
export function compileTariffOffers(cfg: TariffsConfig, tariffs: Tariffs): TariffOffers {
  const byName = new Map<string, TariffOffer>();
  for (const [name, t] of Object.entries(cfg.tariffs)) {
    const tariff = tariffs.byName.get(name);
    if (tariff === undefined) throw new TariffConfigError(`tariffs.${name}`, 'not among the compiled tariffs (compile the same config)');
    (t.eligibleClasses ?? []).forEach((c, i) => {
      if (!CUSTOMER_CLASSES.includes(c)) throw new TariffConfigError(`tariffs.${name}.eligibleClasses.${i}`, `expected one of ${CUSTOMER_CLASSES.join(', ')}`);
    });
    const eligibleClasses = new Set<CustomerClass>(t.eligibleClasses ?? CUSTOMER_CLASSES);
    byName.set(name, { tariff, eligibleClasses, pricing: compilePricing(name, cfg, tariff) });
  }
  return { tariffs, byName };
}

// ---- usage: energy per band over a window ----

export interface Usage {
  /** Wh per band of the tariff, every band present, in band order. */
  readonly bands: Readonly<Record<string, number>>;
  readonly totalWh: number;
  /** Highest interval average import power among the intervals starting in the window, W; null without any. */
  readonly maxDemandW: number | null;
  /** Intervals starting in the window (an interval belongs to the window it starts in, as in billing reads). */
  readonly intervals: number;
  readonly estimatedIntervals: number;
  /** Milliseconds of the window covered by intervals. */
  readonly coveredMs: number;
}

/**
 * Energy per band of `tariff` over [fromMs, toMs): an interval inside one band counts whole; one across a band edge
 * or a window boundary is cut there and its Wh apportioned by time, as billing reads do. One interval per start
 * (the last given wins).
 */
export function usageOf(tariff: Tariff, intervals: readonly BillingInterval[], fromMs: number, toMs: number): Usage {
  const bands: Record<string, number> = {};
  for (const b of tariff.bands) bands[b] = 0;
  const byStart = new Map<number, BillingInterval>();
  for (const iv of intervals) byStart.set(iv.start, iv);
  let totalWh = 0;
  let maxDemandW: number | null = null;
  let count = 0;
  let estimated = 0;
  let coveredMs = 0;
  for (const iv of [...byStart.values()].sort((a, b) => a.start - b.start)) {
    const s = iv.start;
    const e = s + iv.durationMs;
    if (e <= fromMs || s >= toMs) continue;
    coveredMs += Math.min(e, toMs) - Math.max(s, fromMs);
    const band = s >= fromMs && e <= toMs ? singleBand(tariff, s, e) : undefined;
    if (band !== undefined) {
      bands[band] = (bands[band] ?? 0) + iv.wh;
      totalWh += iv.wh;
    } else {
      // Parts outside the window take their share of the Wh and are dropped (band null).
      const segs: { band: string | null; ms: number }[] = [];
      if (s < fromMs) segs.push({ band: null, ms: fromMs - s });
      for (const g of bandSegments(tariff, Math.max(s, fromMs), Math.min(e, toMs))) segs.push({ band: g.band, ms: g.toMs - g.fromMs });
      if (e > toMs) segs.push({ band: null, ms: e - toMs });
      const wh = apportion(
        iv.wh,
        segs.map((g) => g.ms),
      );
      segs.forEach((g, i) => {
        if (g.band === null) return;
        bands[g.band] = (bands[g.band] ?? 0) + (wh[i] ?? 0);
        totalWh += wh[i] ?? 0;
      });
    }
    if (s >= fromMs) {
      count++;
      if (iv.estimated) estimated++;
      if (maxDemandW === null || iv.demandW > maxDemandW) maxDemandW = iv.demandW;
    }
  }
  return { bands, totalWh, maxDemandW, intervals: count, estimatedIntervals: estimated, coveredMs };
}

// ---- the bill ----

export interface BandCharge {
  band: string;
  wh: number;
  /** Price per kWh as configured. */
  pricePerKwh: string;
  amountMinor: number;
  amount: string;
}

export interface Bill {
  tariff: string;
  currency: string;
  minorDigits: number;
  /** Every band of the tariff, in band order. */
  bands: BandCharge[];
  /** Sum of the band amounts. */
  energyMinor: number;
  energy: string;
  /** Local days of the window (standing charge days). */
  days: number;
  fixedPerDay: string | null;
  fixedMinor: number;
  fixed: string;
  /** Maximum demand charged, whole W (the highest interval average, rounded half-up); null without intervals. */
  maxDemandW: number | null;
  demandCharge: string | null;
  demandMinor: number;
  demand: string;
  /** energy + fixed + demand, each rounded once: the bill always adds up. */
  totalMinor: number;
  total: string;
}

/** The bill of `usage` over `days` local days on a priced tariff (see the rounding rule at the top of the module). */
export function billOf(tariff: string, pricing: TariffPricing, usage: Pick<Usage, 'bands' | 'maxDemandW'>, days: number): Bill {
  if (!Number.isSafeInteger(days) || days < 0) throw new RangeError(`days must be a non-negative integer, got ${days}`);
  const d = pricing.minorDigits;
  const bands: BandCharge[] = [];
  let energy = 0n;
  for (const [band, price] of pricing.microPerKwh) {
    const wh = usage.bands[band] ?? 0;
    if (!Number.isSafeInteger(wh) || wh < 0) throw new RangeError(`band ${band}: expected a non-negative integer Wh, got ${wh}`);
    const minor = nanoToMinor(BigInt(wh) * price, d);
    energy += minor;
    bands.push({ band, wh, pricePerKwh: pricing.prices[band] ?? '', amountMinor: safe(minor), amount: formatMinor(minor, d) });
  }
  const fixed = nanoToMinor(BigInt(days) * pricing.fixedMicroPerDay * 1000n, d);
  const maxDemandW = usage.maxDemandW === null ? null : Math.max(0, Math.round(usage.maxDemandW));
  const demand = maxDemandW === null ? 0n : nanoToMinor(BigInt(maxDemandW) * pricing.demandMicroPerKw, d);
  const total = energy + fixed + demand;
  return {
    tariff,
    currency: pricing.currency,
    minorDigits: d,
    bands,
    energyMinor: safe(energy),
    energy: formatMinor(energy, d),
    days,
    fixedPerDay: pricing.fixedPerDay,
    fixedMinor: safe(fixed),
    fixed: formatMinor(fixed, d),
    maxDemandW,
    demandCharge: pricing.demandCharge,
    demandMinor: safe(demand),
    demand: formatMinor(demand, d),
    totalMinor: safe(total),
    total: formatMinor(total, d),
  };
}

// ---- load shift scenario ----
