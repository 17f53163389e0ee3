import { Type, type Static } from 'typebox';

/** config/billing.yaml: quality gate, day/period closing, API paging and on-demand reads. */
export const BillingConfig = Type.Object(
  {
    quality: Type.Object(
      {
        maxEstimatedPct: Type.Number({ minimum: 0, maximum: 100 }),
        minCompletenessPct: Type.Number({ minimum: 0, maximum: 100 }),
      },
      { additionalProperties: false },
    ),
    /** Billing periods run from this day of the month to the same day of the next (1: calendar months). */
    periodStartDay: Type.Integer({ minimum: 1, maximum: 28 }),
    close: Type.Object(
      {
        /** How often the repeatable job compares the watermark with the closed days. */
        everyMs: Type.Integer({ minimum: 1000 }),
        /** First local day to close when nothing was closed yet ('' = the day of the earliest interval). */
        firstDay: Type.String({ pattern: '^(\\d{4}-\\d{2}-\\d{2})?$' }),
        /** Meters per InfluxDB query when closing a day. */
        meterChunk: Type.Integer({ minimum: 1, maximum: 5000 }),
      },
      { additionalProperties: false },
    ),
    worker: Type.Object(
      {
        concurrency: Type.Integer({ minimum: 1, maximum: 64 }),
        attempts: Type.Integer({ minimum: 1, maximum: 100 }),
        backoffMs: Type.Integer({ minimum: 10 }),
      },
      { additionalProperties: false },
    ),
    api: Type.Object(
      {
        defaultLimit: Type.Integer({ minimum: 1 }),
        maxLimit: Type.Integer({ minimum: 1, maximum: 10_000 }),
        maxRangeDays: Type.Integer({ minimum: 1 }),
      },
      { additionalProperties: false },
    ),
    remoteRead: Type.Object(
      {
        timeoutMs: Type.Integer({ minimum: 100, maximum: 600_000 }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type BillingConfig = Static<typeof BillingConfig>;
