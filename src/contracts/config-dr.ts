import { Type, type Static } from 'typebox';

/**
 * Demand-response settlement: how a participant's customer baseline load (CBL) is built (src/domain/cbl.ts).
 * Shape only; `checkCblConfig` (src/domain/cbl.ts) checks what a schema cannot (x ≤ y, windows on the interval grid).
 */

export const CBL_ADJUSTMENTS = ['none', 'additive', 'multiplicative'] as const;
export type CblAdjustmentMode = (typeof CBL_ADJUSTMENTS)[number];

const DaySet = Type.Object(
  {
    /** Days averaged: the x with the highest usage in the event window. x = y averages all of them. */
    x: Type.Integer({ minimum: 1, maximum: 60 }),
    /** Like days considered: the y most recent eligible ones. */
    y: Type.Integer({ minimum: 1, maximum: 60 }),
  },
  { additionalProperties: false },
);

export const CblConfig = Type.Object(
  {
    method: Type.Literal('highXofY'),
    /** Events on a weekday are measured against weekdays that are not holidays. */
    weekday: DaySet,
    /** Events on a weekend day or holiday are measured against weekend days and holidays. */
    weekend: DaySet,
    /** Calendar days before the event day searched for like days. */
    lookbackDays: Type.Integer({ minimum: 1, maximum: 366 }),
    /** A like day whose event-window usage is below this share of the candidates' average is dropped (0: off). */
    lowUsageShare: Type.Number({ minimum: 0, maximum: 1 }),
    /** A like day with more than this share of its window intervals missing or estimated is dropped. */
    maxMissingShare: Type.Number({ minimum: 0, maximum: 1 }),
    adjustment: Type.Object(
      {
        /** Same-day adjustment from the hours before the event: none, additive (Wh per interval) or multiplicative (ratio). */
        mode: Type.Enum(CBL_ADJUSTMENTS),
        /** Length of the adjustment window, hours. */
        windowHours: Type.Number({ exclusiveMinimum: 0, maximum: 12 }),
        /** Hours between the end of the adjustment window and the event start (pre-event ramping is kept out). */
        gapHours: Type.Number({ minimum: 0, maximum: 12 }),
        /** Multiplicative only: the ratio is clamped to 1 ± capShare. */
        capShare: Type.Number({ minimum: 0, maximum: 10 }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type CblConfig = Static<typeof CblConfig>;

const WebhookName = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' });

/** Who hears of a new event: webhooks of config/alerts.yaml (names; their URLs and secrets stay with the alerts role). */
export const DrNotifyConfig = Type.Object(
  {
    /** One signed POST per participant per webhook for an event that has not ended yet; empty: nobody is notified. */
    webhooks: Type.Array(WebhookName, { maxItems: 16 }),
  },
  { additionalProperties: false },
);

/** What an operator may create (POST /api/v1/dr/events). */
export const DrEventLimits = Type.Object(
  {
    /** Longest event, hours. */
    maxDurationHours: Type.Number({ exclusiveMinimum: 0, maximum: 48 }),
    /** Most participants one event may resolve to (a feeder or transformer selection too). */
    maxParticipants: Type.Integer({ minimum: 1, maximum: 100_000 }),
    /** How far ahead an event may start, days. */
    maxAheadDays: Type.Number({ minimum: 0, maximum: 366 }),
    /** How far back an event recorded after the fact may start, days (settlement needs the lookback before it too). */
    maxPastDays: Type.Number({ minimum: 0, maximum: 366 }),
    /** Interval grid events snap to (start and end on it), minutes; the meters' interval length. */
    gridMinutes: Type.Integer({ minimum: 1, maximum: 60 }),
  },
  { additionalProperties: false },
);

/** When a settlement is final rather than provisional (late reads can still change it before). */
export const DrSettlementConfig = Type.Object(
  {
    /** A settlement is final once every participant's event data is in, or this long after the event end, hours. */
    finalAfterHours: Type.Number({ minimum: 0, maximum: 24 * 30 }),
  },
  { additionalProperties: false },
);

/** Day-ahead peak forecast (src/domain/peak-forecast.ts). */
export const DrForecastConfig = Type.Object(
  {
    /** Like days averaged per slot: the most recent days of the target's type (weekday, or weekend/holiday). */
    likeDays: Type.Integer({ minimum: 1, maximum: 30 }),
    /** Calendar days searched back for them. */
    lookbackDays: Type.Integer({ minimum: 1, maximum: 90 }),
    /** Trend: the level of the most recent `trendDays` like days against all `likeDays` scales the forecast … */
    trendDays: Type.Integer({ minimum: 0, maximum: 30 }),
    /** … by at most 1 ± trendCap. */
    trendCap: Type.Number({ minimum: 0, maximum: 1 }),
    /** An event would pay where the forecast reaches this share of the like days' typical daily peak … */
    peakShare: Type.Number({ exclusiveMinimum: 0, maximum: 2 }),
    /** … or this capacity, kW, when set (> 0): the fleet's or the selection's limit. 0: use peakShare. */
    thresholdKw: Type.Number({ minimum: 0 }),
    /** Suggested windows shorter than this are widened around their peak, minutes. */
    minWindowMinutes: Type.Integer({ minimum: 0, maximum: 24 * 60 }),
  },
  { additionalProperties: false },
);

/** The `dr` config section (config/dr.yaml): the CBL method settlement uses, notification, limits and the forecast. */
export const DrConfig = Type.Object(
  { cbl: CblConfig, notify: DrNotifyConfig, events: DrEventLimits, settlement: DrSettlementConfig, forecast: DrForecastConfig },
  { additionalProperties: false },
);
export type DrConfig = Static<typeof DrConfig>;

/**
 * Defaults: PJM-style "High 4 of 5" weekday CBL with a symmetric additive same-day adjustment from the 3 hours
 * ending 1 hour before the event, 45-day search, low-usage days (< 25 % of the candidates' average) dropped.
 * Weekend and holiday events use High 2 of 3 (our choice: like days are scarcer). Sources and caveats: src/domain/cbl.ts.
 */
export const CBL_DEFAULTS: CblConfig = {
  method: 'highXofY',
  weekday: { x: 4, y: 5 },
  weekend: { x: 2, y: 3 },
  lookbackDays: 45,
  lowUsageShare: 0.25,
  maxMissingShare: 0.1,
  adjustment: { mode: 'additive', windowHours: 3, gapHours: 1, capShare: 0.2 },
};
