import { Type, type Static } from 'typebox';

/**
 * config/insights.yaml: customer segments (consumption tiers per class) and the watch-list of falling consumption.
 * Shape only; `compileTiers` (src/domain/profiles.ts) checks what a schema cannot (shares in order, a last tier for the rest).
 */

/** One tier: `share` of the class's customers, counted from the top; the last tier takes the rest and has no share. */
const Tier = Type.Object(
  {
    tier: Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' }),
    share: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
  },
  { additionalProperties: false },
);
const TierList = Type.Array(Tier, { minItems: 1, maxItems: 10 });
export type TierConfig = Static<typeof Tier>;

export const InsightsConfig = Type.Object(
  {
    segments: Type.Object(
      {
        /** Tiers of every class not listed under `classes`, from the largest consumers down. */
        default: TierList,
        classes: Type.Object(
          {
            residential: Type.Optional(TierList),
            commercial: Type.Optional(TierList),
            industrial: Type.Optional(TierList),
            critical: Type.Optional(TierList),
          },
          { additionalProperties: false },
        ),
      },
      { additionalProperties: false },
    ),
    watchlist: Type.Object(
      {
        /** A customer is listed when its latest month is more than this share below its baseline (0.3: a 30 % fall). */
        dropShare: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 }),
      },
      { additionalProperties: false },
    ),
    /** GET /api/v1/insights/profiles: customers per page (JSON or CSV), by default and at most. */
    api: Type.Object(
      {
        defaultLimit: Type.Integer({ minimum: 1, maximum: 10_000 }),
        maxLimit: Type.Integer({ minimum: 1, maximum: 10_000 }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type InsightsConfig = Static<typeof InsightsConfig>;
