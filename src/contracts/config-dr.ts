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

/** A `dr` config section: the CBL method settlement uses. */
export const DrConfig = Type.Object({ cbl: CblConfig }, { additionalProperties: false });
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
