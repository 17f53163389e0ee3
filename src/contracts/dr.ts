import { Type, type Static } from 'typebox';

/**
 * Demand response (issue 18): events as stored in Redis (src/shared/dr-store.ts) and the API's bodies
 * (src/api/routes/dr.ts). Times in stored records are epoch ms; the API shows ISO-8601 UTC.
 */

const Ms = Type.Number({ description: 'epoch milliseconds' });
const Iso = Type.String({ format: 'date-time' });
const Id = Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\u0000-\\u001f\\u007f]+$' });

/** Event ids: random, url-safe (base64url of 16 bytes), or a client's own of the same alphabet. */
export const DR_EVENT_ID_PATTERN = '^[A-Za-z0-9_-]{8,64}$';

/** Who takes part: exactly one of a list of customers, a feeder or a transformer (as the operator gave it). */
export const DrSelector = Type.Union([
  Type.Object({ customerIds: Type.Array(Id, { minItems: 1 }) }, { additionalProperties: false }),
  Type.Object({ feederId: Id }, { additionalProperties: false }),
  Type.Object({ transformerId: Id }, { additionalProperties: false }),
]);
export type DrSelector = Static<typeof DrSelector>;

export const DrEventRecord = Type.Object({
  id: Type.String({ pattern: DR_EVENT_ID_PATTERN }),
  startMs: Ms,
  endMs: Ms,
  selector: DrSelector,
  /** The participants resolved from the registry at creation, sorted. */
  customerIds: Type.Array(Type.String(), { minItems: 1 }),
  requestedReductionKw: Type.Number({ minimum: 0 }),
  createdAt: Ms,
  /** Id of the API token that created it (never the token). */
  createdBy: Type.String(),
  /** Notify jobs were enqueued (an event whose window had not ended when it was created). */
  notified: Type.Boolean(),
  /** The event was created after its end: recorded, not notified. */
  recordedAfter: Type.Boolean(),
});
export type DrEventRecord = Static<typeof DrEventRecord>;

// --- API bodies ---------------------------------------------------------------------------------------------

const TimeIn = Type.String({ minLength: 1, maxLength: 64, description: 'ISO-8601 time with an offset (or Z), on the 15-minute grid' });

export const DrEventCreateBody = Type.Object(
  {
    start: TimeIn,
    end: TimeIn,
    customerIds: Type.Optional(Type.Array(Id, { minItems: 1, maxItems: 10_000 })),
    feederId: Type.Optional(Id),
    transformerId: Type.Optional(Id),
    requestedReductionKw: Type.Number({ minimum: 0, maximum: 1e7, description: 'What all participants together are asked to cut, kW' }),
    id: Type.Optional(
      Type.String({ pattern: DR_EVENT_ID_PATTERN, description: "The client's own event id (idempotent: the same body again answers the same event)" }),
    ),
  },
  { additionalProperties: false },
);
export type DrEventCreateBody = Static<typeof DrEventCreateBody>;

export const DrEventCreated = Type.Object({
  id: Type.String(),
  /** True when this request (or the first of its repeats) enqueued the participants' notifications. */
  notified: Type.Boolean(),
  participants: Type.Integer(),
  /** True when an earlier request with the same Idempotency-Key or id created it. */
  replayed: Type.Boolean(),
});

export const DrEventView = Type.Object({
  id: Type.String(),
  start: Iso,
  end: Iso,
  selector: Type.Object({
    customerIds: Type.Optional(Type.Array(Type.String())),
    feederId: Type.Optional(Type.String()),
    transformerId: Type.Optional(Type.String()),
  }),
  customerIds: Type.Array(Type.String()),
  requestedReductionKw: Type.Number(),
  createdAt: Iso,
  createdBy: Type.String(),
  notified: Type.Boolean(),
  recordedAfter: Type.Boolean(),
});
export type DrEventView = Static<typeof DrEventView>;

export function toDrEventView(e: DrEventRecord): DrEventView {
  return {
    id: e.id,
    start: new Date(e.startMs).toISOString(),
    end: new Date(e.endMs).toISOString(),
    selector: { ...e.selector },
    customerIds: e.customerIds,
    requestedReductionKw: e.requestedReductionKw,
    createdAt: new Date(e.createdAt).toISOString(),
    createdBy: e.createdBy,
    notified: e.notified,
    recordedAfter: e.recordedAfter,
  };
}

export const DrEventPage = Type.Object({ items: Type.Array(DrEventView), nextCursor: Type.Union([Type.String(), Type.Null()]) });

/** unsettleable: its meters' interval does not divide the event window, or it has no registered meter left. */
const Quality = Type.Union([Type.Literal('ok'), Type.Literal('insufficient_history'), Type.Literal('missing_event_data'), Type.Literal('unsettleable')]);
const Basis = Type.Union([Type.Literal('requested'), Type.Literal('baseline')]);

export const DrParticipantSettlement = Type.Object({
  customerId: Type.String(),
  meterIds: Type.Array(Type.String()),
  /** The zone its like days and event window are cut in: its tariff's. */
  timezone: Type.String(),
  quality: Quality,
  dayType: Type.Union([Type.Literal('weekday'), Type.Literal('weekend')]),
  baselineWh: Type.Number(),
  actualWh: Type.Number(),
  reductionWh: Type.Number(),
  /** reductionWh ÷ baselineWh: the share of its baseline it cut (0 unless quality is ok). */
  cutShare: Type.Number(),
  /** Its share of the event's request: requested kWh × its baseline ÷ the settled participants' baselines; null unless ok. */
  requestedWh: Type.Union([Type.Number(), Type.Null()]),
  /** reductionWh ÷ requestedWh (1 = delivered its share), or ÷ baselineWh when nothing was requested (basis). */
  performance: Type.Number(),
  performanceBasis: Basis,
  adjustmentWh: Type.Number(),
  selectedDays: Type.Array(Type.String()),
  candidateDays: Type.Array(Type.String()),
  excludedDays: Type.Array(Type.Object({ day: Type.String(), reason: Type.String() })),
  intervals: Type.Array(Type.Object({ start: Iso, baselineWh: Type.Number(), actualWh: Type.Number(), measured: Type.Boolean() })),
});

export const DrSettlementBody = Type.Object({
  eventId: Type.String(),
  start: Iso,
  end: Iso,
  /** provisional: some participant's event data is not in yet and the event ended less than finalAfterHours ago. */
  status: Type.Union([Type.Literal('provisional'), Type.Literal('final')]),
  method: Type.String({ description: 'The CBL method, e.g. "High 4 of 5 (weekday), High 2 of 3 (weekend), additive 3 h / 1 h adjustment"' }),
  timezone: Type.String(),
  participants: Type.Array(DrParticipantSettlement),
  totals: Type.Object({
    participants: Type.Integer(),
    settled: Type.Integer(),
    insufficientHistory: Type.Integer(),
    missingEventData: Type.Integer(),
    unsettleable: Type.Integer(),
    baselineWh: Type.Number(),
    actualWh: Type.Number(),
    reductionWh: Type.Number(),
    requestedWh: Type.Union([Type.Number(), Type.Null()]),
    performance: Type.Number(),
    performanceBasis: Basis,
  }),
});

export const DrForecastBody = Type.Object({
  day: Type.String(),
  timezone: Type.String(),
  scope: Type.Object({
    kind: Type.Union([Type.Literal('fleet'), Type.Literal('feeder'), Type.Literal('transformer')]),
    id: Type.Union([Type.String(), Type.Null()]),
  }),
  dayType: Type.Union([Type.Literal('weekday'), Type.Literal('weekend')]),
  likeDays: Type.Array(Type.String()),
  trendFactor: Type.Number(),
  intervalMinutes: Type.Integer(),
  slots: Type.Array(Type.Object({ start: Iso, expectedKw: Type.Number() })),
  peak: Type.Union([Type.Object({ start: Iso, expectedKw: Type.Number() }), Type.Null()]),
  typicalPeakKw: Type.Number(),
  thresholdKw: Type.Number(),
  thresholdBasis: Type.Union([Type.Literal('capacity'), Type.Literal('peakShare')]),
  windows: Type.Array(Type.Object({ start: Iso, end: Iso, peakKw: Type.Number(), excessKwh: Type.Number() })),
});

// ---- Notices to participants: jobs on the alerts role's `notify` queue (src/contracts/alert.ts NotifyJob) ----

/** What a participant is told of a demand-response event (times ISO-8601 UTC). */
export const DrNotice = Type.Object({
  eventId: Type.String(),
  start: Iso,
  end: Iso,
  /** What the operator asked of all participants together, kW. */
  requestedReductionKw: Type.Number(),
  participants: Type.Integer({ minimum: 1 }),
  customerId: Type.String(),
  /** The customer's meters at creation. */
  meterIds: Type.Array(Type.String()),
});
export type DrNotice = Static<typeof DrNotice>;

/** A demand-response notify job, enqueued by the API when an event is created: one per participant and webhook. */
export const DrNotifyJob = Type.Object({
  kind: Type.Literal('dr'),
  webhook: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
  idempotencyKey: Type.String({ minLength: 1 }),
  /** When the event was created (wall time). */
  at: Ms,
  dr: DrNotice,
});
export type DrNotifyJob = Static<typeof DrNotifyJob>;

/**
 * Body POSTed to a webhook for a demand-response event, signed like the alert bodies. `type` tells the two apart
 * (alert bodies have no `type`); the receiver dedups on idempotencyKey (`dr.<eventId>.<customerId>`).
 */
export const DrWebhookBody = Type.Object({
  type: Type.Literal('dr.event'),
  idempotencyKey: Type.String(),
  at: Iso,
  event: Type.Object({ id: Type.String(), start: Iso, end: Iso, requestedReductionKw: Type.Number(), participants: Type.Integer() }),
  participant: Type.Object({ customerId: Type.String(), meterIds: Type.Array(Type.String()) }),
});
export type DrWebhookBody = Static<typeof DrWebhookBody>;
