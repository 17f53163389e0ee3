import { Type, type Static } from 'typebox';
import { CUSTOMER_CLASSES, type CustomerClass } from './registry.js';

/**
 * config/tariffs.yaml: named time-of-use tariffs, their prices and holiday calendars.
 * Shape only; `compileTariffs` (src/domain/tariffs.ts) checks times, bands, zones and rule coverage,
 * `compileTariffOffers` (src/domain/tariff-advice.ts) checks prices against bands and currencies.
 */
export const DAY_KINDS = ['weekday', 'weekend', 'holiday'] as const;
export type DayKind = (typeof DAY_KINDS)[number];

export const WEEKDAY_NAMES = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type WeekdayName = (typeof WEEKDAY_NAMES)[number];

/** From `from` (local HH:MM) until the next period's `from` (or midnight) the band is `band`. */
export interface TariffPeriodConfig {
  from: string;
  band: string;
}

/** A day schedule that applies in `months` (1–12, default all) on `days` kinds. The first matching rule wins. */
export interface TariffRuleConfig {
  months?: number[];
  days: DayKind[];
  periods: TariffPeriodConfig[];
}

export interface TariffConfig {
  description?: string;
  /** IANA zone; unset: the tariffs-wide `timezone`, else the process time zone (MF_TIMEZONE, default UTC). */
  timezone?: string;
  /** Band names in billing order (CSV columns follow it). */
  bands: string[];
  /** Name of a calendar in `calendars`; its holidays use the `holiday` day kind. */
  calendar?: string;
  /** Days that count as weekend (default sat, sun). */
  weekend?: WeekdayName[];
  rules: TariffRuleConfig[];
  /** ISO 4217 code of the prices; unset: the tariffs-wide `currency`. */
  currency?: string;
  /**
   * Price per kWh of every band (each band of `bands`, no other), in currency units as a decimal string with at most
   * 6 decimals: money never passes through a binary float. Unset: the tariff has no prices (bands still work for
   * billing reads; the tariff advisor lists it as unpriced).
   */
  prices?: Record<string, string>;
  /** Standing charge per local day of the bill (decimal string, currency units). Needs `prices`. */
  fixedPerDay?: string;
  /** Price per kW of the bill's maximum demand (highest interval average power), charged once per bill. Needs `prices`. */
  demandCharge?: string;
  /** Customer classes (registry `class`) that may take the tariff; unset: every class. */
  eligibleClasses?: CustomerClass[];
}

export interface CalendarConfig {
  /** Local dates YYYY-MM-DD billed as holidays. */
  holidays: string[];
  /** Local dates YYYY-MM-DD that fall on a weekend but are worked (e.g. China's adjusted working days). */
  workdays?: string[];
}

export interface TariffsConfig {
  /** Tariff used for meters whose registry tariff is unknown. */
  default: string;
  timezone?: string;
  /** ISO 4217 code for tariffs that name none. */
  currency?: string;
  calendars: Record<string, CalendarConfig>;
  tariffs: Record<string, TariffConfig>;
}

const LocalDate = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' });

/** A non-negative decimal amount of currency units, at most 6 decimals (micro-units), as a string. */
export const PRICE_PATTERN = '^\\d{1,9}(\\.\\d{1,6})?$';
const Price = Type.String({ pattern: PRICE_PATTERN, description: 'Decimal string, at most 6 decimals, e.g. "0.132514"' });
const Currency = Type.String({ pattern: '^[A-Z]{3}$', description: 'ISO 4217 code, e.g. EUR' });

const TariffPeriod = Type.Object(
  {
    from: Type.String({ pattern: '^([01]\\d|2[0-3]):[0-5]\\d$' }),
    band: Type.String({ minLength: 1, maxLength: 32 }),
  },
  { additionalProperties: false },
);

const TariffRule = Type.Object(
  {
    months: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 12 }), { minItems: 1 })),
    days: Type.Array(Type.Enum(DAY_KINDS), { minItems: 1 }),
    periods: Type.Array(TariffPeriod, { minItems: 1 }),
  },
  { additionalProperties: false },
);

const TariffDef = Type.Object(
  {
    description: Type.Optional(Type.String()),
    timezone: Type.Optional(Type.String({ minLength: 1 })),
    bands: Type.Array(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,31}$' }), { minItems: 1 }),
    calendar: Type.Optional(Type.String({ minLength: 1 })),
    weekend: Type.Optional(Type.Array(Type.Enum(WEEKDAY_NAMES))),
    rules: Type.Array(TariffRule, { minItems: 1 }),
    currency: Type.Optional(Currency),
    prices: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,31}$' }), Price)),
    fixedPerDay: Type.Optional(Price),
    demandCharge: Type.Optional(Price),
    eligibleClasses: Type.Optional(Type.Array(Type.Enum(CUSTOMER_CLASSES), { minItems: 1, uniqueItems: true })),
  },
  { additionalProperties: false },
);

const Calendar = Type.Object(
  {
    holidays: Type.Array(LocalDate),
    workdays: Type.Optional(Type.Array(LocalDate)),
  },
  { additionalProperties: false },
);

export const TariffsConfigSchema = Type.Object(
  {
    default: Type.String({ minLength: 1 }),
    timezone: Type.Optional(Type.String({ minLength: 1 })),
    currency: Type.Optional(Currency),
    calendars: Type.Record(Type.String(), Calendar),
    tariffs: Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), TariffDef),
  },
  { additionalProperties: false },
);
export type TariffsConfigSection = Static<typeof TariffsConfigSchema>;

// Compile-time check: what the schema accepts is the shape the domain compiles (src/domain/tariffs.ts).
type SameShape = TariffsConfigSection extends TariffsConfig ? true : false;
export const TARIFFS_SCHEMA_MATCHES_DOMAIN: SameShape = true;
