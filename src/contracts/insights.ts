import { Type, type Static } from 'typebox';
import { QUALITIES } from './billing.js';
import { CUSTOMER_CLASSES } from './registry.js';

/**
 * Customer insights: the monthly customer profile (written by the billing role as `customer_profile` points, served
 * by the API) and the watch-list of customers whose consumption fell. How profiles are stored: src/shared/profile-store.ts.
 */

export const PROFILE_MEASUREMENT = 'customer_profile';

/** Years 1900-2199: InfluxDB holds no time after 2262, and the watch-list looks 17 months back. */
export const Month = Type.String({
  pattern: '^(19|20|21)\\d{2}-(0[1-9]|1[0-2])$',
  description: "Calendar month YYYY-MM (1900-2199) in the customer's tariff time zone",
});

const Iso = Type.String({ description: 'ISO-8601 with the offset of the tariff time zone' });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/** One of the customer's meters over the month (a meter exchange: two of them). */
export const ProfileMeter = Type.Object({
  meterId: Type.String(),
  tariff: Type.String(),
  /** Import register at the month's first local midnight; null when this meter was not measuring then. */
  startRegisterWh: Nullable(Type.Integer()),
  /** At the month's last local midnight; null when this meter was not measuring then. */
  endRegisterWh: Nullable(Type.Integer()),
  energyWh: Type.Integer(),
  intervals: Type.Integer(),
  estimatedIntervals: Type.Integer(),
  registerBreaks: Type.Integer(),
});
export type ProfileMeter = Static<typeof ProfileMeter>;

export const TariffAdviceSummary = Type.Object({
  currency: Type.String(),
  currentTariff: Type.String(),
  currentAmountMinor: Type.Integer({ description: "The month's intervals billed on the current tariff, integer minor units" }),
  bestTariff: Type.String({ description: 'The cheapest tariff the class may take (the current one when nothing is cheaper)' }),
  bestAmountMinor: Type.Integer(),
  savingMinor: Type.Integer({ description: 'current − best' }),
});
export type TariffAdviceSummary = Static<typeof TariffAdviceSummary>;

export const CustomerProfile = Type.Object({
  customerId: Type.String(),
  class: Type.Enum(CUSTOMER_CLASSES),
  month: Month,
  timezone: Type.String(),
  /** The customer's current tariff: its bands split the energy. */
  tariff: Type.String(),
  from: Iso,
  to: Iso,
  days: Type.Integer(),
  hours: Type.Number({ description: 'Hours in the local month (743 or 745 with a DST change)' }),
  energyWh: Type.Integer({ description: "Import energy: the sum of the meters' register deltas over the month" }),
  quality: Type.Enum(QUALITIES),
  completeness: Type.Number({ description: 'Percent of the month covered by intervals' }),
  intervals: Type.Integer(),
  estimatedIntervals: Type.Integer(),
  bands: Type.Array(Type.Object({ band: Type.String(), wh: Type.Integer(), share: Type.Number() })),
  maxDemandW: Nullable(Type.Number({ description: "Highest coincident demand: the customer's meters summed per interval" })),
  maxDemandAt: Nullable(Iso),
  loadFactor: Nullable(Type.Number({ description: 'energyWh / (maxDemandW × hours)' })),
  weekdayAvgWh: Nullable(Type.Number()),
  weekendAvgWh: Nullable(Type.Number({ description: 'Weekend days and tariff holidays' })),
  weekdayWeekendRatio: Nullable(Type.Number()),
  previousMonthWh: Nullable(Type.Integer()),
  changeVsPreviousMonth: Nullable(Type.Number({ description: 'Share, e.g. -0.25; null when either month is missing or incomplete' })),
  lastYearWh: Nullable(Type.Integer()),
  changeVsLastYear: Nullable(Type.Number()),
  segment: Type.String({ description: '<class>/<tier>' }),
  tier: Type.String(),
  classRank: Type.Integer({ description: 'Rank by energy within the class and time zone, 1 = largest' }),
  classSize: Type.Integer(),
  meters: Type.Array(ProfileMeter),
  tariffAdvice: Nullable(TariffAdviceSummary),
  computedAt: Iso,
});
export type CustomerProfile = Static<typeof CustomerProfile>;

export const ProfilesResponse = Type.Object({
  month: Month,
  items: Type.Array(CustomerProfile),
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});

export const WATCH_REASONS = ['data-quality', 'class-trend', 'seasonal', 'meter-exchange', 'tariff-or-class-change'] as const;
export type WatchReason = (typeof WATCH_REASONS)[number];

export const WatchEntry = Type.Object({
  customerId: Type.String(),
  class: Type.Enum(CUSTOMER_CLASSES),
  months: Type.Array(Type.Object({ month: Month, energyWh: Type.Integer(), quality: Type.Enum(QUALITIES) }), {
    description: 'The 3 baseline months, then the last 3',
  }),
  baselineWh: Type.Number(),
  latestWh: Type.Integer(),
  dropShare: Type.Number({ description: '1 − latest / baseline' }),
  classChange: Nullable(Type.Number({ description: "The rest of the class's energy, latest month against its baseline months" })),
  dropNetOfClass: Nullable(Type.Number()),
  lastYearChange: Nullable(Type.Number({ description: 'The same months a year earlier, latest against baseline' })),
  dropNetOfLastYear: Nullable(Type.Number()),
  kind: Type.Union([Type.Literal('sudden'), Type.Literal('gradual')]),
  suspected: Type.Literal('churn-or-theft', { description: 'Energy alone cannot tell a customer leaving from energy taken around the meter' }),
  reasons: Type.Array(Type.Enum(WATCH_REASONS), { description: 'Known explanations; empty for listed customers' }),
});
export type WatchEntry = Static<typeof WatchEntry>;

export const WatchlistResponse = Type.Object({
  month: Month,
  dropShare: Type.Number(),
  items: Type.Array(WatchEntry, { description: 'Unexplained falls, largest first' }),
  explained: Type.Array(WatchEntry, { description: 'Falls with a known reason, for the record' }),
});
export type WatchlistResponse = Static<typeof WatchlistResponse>;
