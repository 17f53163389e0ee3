import { Type, type Static } from 'typebox';
import { ANOMALY_TYPES, SEVERITIES, type DetectionEvent } from './events.js';
import { DrNotifyJob } from './dr.js';
import { CUSTOMER_CLASSES } from './registry.js';

/** BullMQ queues: detection events in (written by the stream worker), webhook deliveries out. */
export const EVENTS_QUEUE = 'events';
export const NOTIFY_QUEUE = 'notify';
/** BullMQ backoff type of notify jobs (alert and demand-response); the alerts role's notify worker resolves it. */
export const NOTIFY_BACKOFF = 'capped';

export const ALERT_STATES = ['open', 'acknowledged', 'resolved'] as const;
export type AlertState = (typeof ALERT_STATES)[number];

/**
 * What happened to an alert. `opened`, `escalated`, `flapping`, `acknowledged`, `resolved` can be notified;
 * `reopened` is a flapping alert opening again (silent: a flapping alert is notified once).
 */
export const ALERT_CHANGES = ['opened', 'escalated', 'flapping', 'reopened', 'acknowledged', 'resolved'] as const;
export type AlertChangeKind = (typeof ALERT_CHANGES)[number];

export const RESOLVED_BY = ['auto', 'operator', 'restored'] as const;

/** At most this many affected meters and customers are listed in an outage (the counts stay the truth). */
export const OUTAGE_LIST_MAX = 1000;

/** Entries kept in an alert's history (the oldest are dropped). */
export const ALERT_HISTORY_MAX = 200;

const Ms = Type.Number({ description: 'epoch milliseconds' });
const NullableMs = Type.Union([Ms, Type.Null()]);
const NullableString = Type.Union([Type.String(), Type.Null()]);
const AnomalyTypeSchema = Type.Enum(ANOMALY_TYPES);
const SeveritySchema = Type.Enum(SEVERITIES);
const CustomerClassSchema = Type.Union([Type.Enum(CUSTOMER_CLASSES), Type.Null()]);

/** What an outage alert knows about the transformer it covers (filled in as meters drop and return). */
export const OutageDetails = Type.Object({
  transformerId: Type.String(),
  feederId: NullableString,
  metersTotal: Type.Integer({ minimum: 0 }),
  /** Meters that lost power at some point during this outage. */
  metersAffected: Type.Integer({ minimum: 0 }),
  customersAffected: Type.Integer({ minimum: 0 }),
  criticalCustomers: Type.Array(Type.String()),
  startedAt: Ms,
  restoredAt: NullableMs,
  durationMs: NullableMs,
  /** Meters still without power when the outage was declared over (they keep their own alerts). */
  stillDown: Type.Integer({ minimum: 0 }),
  /** The affected meters and their customers, sorted, at most OUTAGE_LIST_MAX (absent in records from before). */
  affectedMeters: Type.Optional(Type.Array(Type.String())),
  affectedCustomers: Type.Optional(Type.Array(Type.String())),
});
export type OutageDetails = Static<typeof OutageDetails>;

/** A held `opened`/`flapping` notification, released when the event-time watermark or the wall clock passes. */
export const PendingNotice = Type.Object({
  change: Type.Enum(['opened', 'flapping'] as const),
  /** Event time (watermark) at which it may be sent; null while parked under an active outage. */
  until: NullableMs,
  /** Wall time fallback for a stalled watermark; null while parked. */
  wallUntil: NullableMs,
});
export type PendingNotice = Static<typeof PendingNotice>;

/**
 * An alert as stored in Redis (times in epoch ms). firstSeen/lastSeen/resolvedAt/clearSince are event time,
 * acknowledgedAt/updatedAt wall time.
 */
export const AlertRecord = Type.Object({
  id: Type.String(),
  key: Type.String(),
  type: AnomalyTypeSchema,
  subjectKind: Type.Enum(['meter', 'customer', 'transformer', 'system'] as const),
  subject: Type.String(),
  severity: SeveritySchema,
  state: Type.Enum(ALERT_STATES),
  count: Type.Integer({ minimum: 0 }),
  firstSeen: Ms,
  lastSeen: Ms,
  /** Start of the current open episode (differs from firstSeen once the alert flapped). */
  episodeStart: Ms,
  reason: Type.String(),
  value: Type.Number(),
  expected: Type.Number(),
  score: Type.Number(),
  flapping: Type.Boolean(),
  flapCount: Type.Integer({ minimum: 0 }),
  customerClass: CustomerClassSchema,
  meterId: NullableString,
  customerId: NullableString,
  transformerId: NullableString,
  feederId: NullableString,
  intervalMs: Type.Integer({ minimum: 1 }),
  clearSince: NullableMs,
  acknowledgedAt: NullableMs,
  acknowledgedBy: NullableString,
  resolvedAt: NullableMs,
  resolvedBy: Type.Union([Type.Enum(RESOLVED_BY), Type.Null()]),
  /** The operator who resolved it, when resolvedBy is `operator`. */
  resolvedByName: NullableString,
  /**
   * Who the alert is assigned to, since when (wall time) and by whom. Kept while the pipeline updates the alert.
   * Optional: records (and queued jobs) written before assignment existed have none.
   */
  assignee: Type.Optional(NullableString),
  assignedAt: Type.Optional(NullableMs),
  assignedBy: Type.Optional(NullableString),
  /** An opened/flapping notice went out for this alert (so its resolution is worth telling too). */
  notified: Type.Boolean(),
  pending: Type.Union([PendingNotice, Type.Null()]),
  /** Id of the outage alert that covers this per-meter alert. */
  suppressedBy: NullableString,
  outage: Type.Union([OutageDetails, Type.Null()]),
  version: Type.Integer({ minimum: 0 }),
  updatedAt: Ms,
});
export type AlertRecord = Static<typeof AlertRecord>;

/** Outage correlation state of one transformer (see src/domain/alert-outage.ts), stored next to the alerts. */
export const TrackerRecord = Type.Object({
  transformerId: Type.String(),
  down: Type.Record(Type.String(), Type.Number()),
  up: Type.Record(Type.String(), Type.Number()),
  active: Type.Union([Type.Object({ alertId: Type.String(), startedAt: Ms, affected: Type.Array(Type.String()) }), Type.Null()]),
  last: Type.Union([
    Type.Object({ alertId: Type.String(), startedAt: Ms, endedAt: Ms, affected: Type.Array(Type.String()), stillDown: Type.Array(Type.String()) }),
    Type.Null(),
  ]),
});
export type TrackerRecord = Static<typeof TrackerRecord>;

/** One alert change, as written to the outbox and carried by notify jobs. */
export const AlertChangeRecord = Type.Object({
  kind: Type.Enum(ALERT_CHANGES),
  notify: Type.Boolean(),
  /** Event time for pipeline-driven changes, wall time for operator actions. */
  at: Ms,
  alert: AlertRecord,
});
export type AlertChangeRecord = Static<typeof AlertChangeRecord>;

const Iso = Type.String({ format: 'date-time' });
const NullableIso = Type.Union([Iso, Type.Null()]);

/** An alert as the API and webhooks show it. */
export const AlertView = Type.Object({
  id: Type.String(),
  key: Type.String(),
  type: AnomalyTypeSchema,
  subjectKind: Type.String(),
  subject: Type.String(),
  severity: SeveritySchema,
  state: Type.Enum(ALERT_STATES),
  count: Type.Integer(),
  firstSeen: Iso,
  lastSeen: Iso,
  reason: Type.String(),
  flapping: Type.Boolean(),
  customerClass: CustomerClassSchema,
  meterId: NullableString,
  customerId: NullableString,
  transformerId: NullableString,
  feederId: NullableString,
  value: Type.Number(),
  expected: Type.Number(),
  score: Type.Number(),
  acknowledgedAt: NullableIso,
  acknowledgedBy: NullableString,
  resolvedAt: NullableIso,
  resolvedBy: NullableString,
  resolvedByName: NullableString,
  assignee: NullableString,
  assignedAt: NullableIso,
  assignedBy: NullableString,
  suppressedBy: NullableString,
  outage: Type.Union([
    Type.Object({
      transformerId: Type.String(),
      feederId: NullableString,
      metersTotal: Type.Integer(),
      metersAffected: Type.Integer(),
      customersAffected: Type.Integer(),
      criticalCustomers: Type.Array(Type.String()),
      startedAt: Iso,
      restoredAt: NullableIso,
      durationMs: Type.Union([Type.Number(), Type.Null()]),
      stillDown: Type.Integer(),
      /** Sorted, at most OUTAGE_LIST_MAX each; metersAffected and customersAffected are the full counts. */
      affectedMeters: Type.Array(Type.String()),
      affectedCustomers: Type.Array(Type.String()),
    }),
    Type.Null(),
  ]),
  version: Type.Integer(),
});
export type AlertView = Static<typeof AlertView>;

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

export function toAlertView(a: AlertRecord): AlertView {
  return {
    id: a.id,
    key: a.key,
    type: a.type,
    subjectKind: a.subjectKind,
    subject: a.subject,
    severity: a.severity,
    state: a.state,
    count: a.count,
    firstSeen: iso(a.firstSeen),
    lastSeen: iso(a.lastSeen),
    reason: a.reason,
    flapping: a.flapping,
    customerClass: a.customerClass,
    meterId: a.meterId,
    customerId: a.customerId,
    transformerId: a.transformerId,
    feederId: a.feederId,
    value: a.value,
    expected: a.expected,
    score: a.score,
    acknowledgedAt: isoOrNull(a.acknowledgedAt),
    acknowledgedBy: a.acknowledgedBy,
    resolvedAt: isoOrNull(a.resolvedAt),
    resolvedBy: a.resolvedBy,
    resolvedByName: a.resolvedByName,
    assignee: a.assignee ?? null,
    assignedAt: isoOrNull(a.assignedAt ?? null),
    assignedBy: a.assignedBy ?? null,
    suppressedBy: a.suppressedBy,
    outage:
      a.outage === null
        ? null
        : {
            ...a.outage,
            startedAt: iso(a.outage.startedAt),
            restoredAt: isoOrNull(a.outage.restoredAt),
            affectedMeters: a.outage.affectedMeters ?? [],
            affectedCustomers: a.outage.affectedCustomers ?? [],
          },
    version: a.version,
  };
}

/**
 * What an alert's history records. Pipeline changes: `opened`, `escalated`, `reopened` (also when it starts
 * flapping), `resolved`; operator actions: `acknowledged`, `assigned`, `commented`, `resolved`.
 */
export const ALERT_HISTORY_ACTIONS = ['opened', 'escalated', 'reopened', 'acknowledged', 'assigned', 'commented', 'resolved'] as const;
export type AlertHistoryAction = (typeof ALERT_HISTORY_ACTIONS)[number];

/** One history entry as stored (a list next to the alert, written in the commit that made the change). */
export const AlertHistoryEntry = Type.Object({
  /** Event time for pipeline changes, wall time for operator actions. */
  at: Ms,
  action: Type.Enum(ALERT_HISTORY_ACTIONS),
  /** The operator (body `by`, else `operator`); null for the pipeline. */
  by: NullableString,
  /** Id of the API token used (never the token); null for the pipeline. */
  tokenId: NullableString,
  comment: NullableString,
  /** The new assignee, on `assigned`. */
  assignee: Type.Optional(NullableString),
});
export type AlertHistoryEntry = Static<typeof AlertHistoryEntry>;

export const AlertHistoryView = Type.Object({
  at: Iso,
  action: Type.Enum(ALERT_HISTORY_ACTIONS),
  by: NullableString,
  tokenId: NullableString,
  comment: NullableString,
  assignee: Type.Optional(NullableString),
});
export type AlertHistoryView = Static<typeof AlertHistoryView>;

export function toHistoryView(e: AlertHistoryEntry): AlertHistoryView {
  return { ...e, at: iso(e.at) };
}

/** Oldest first. */
export const AlertHistoryPage = Type.Object({ items: Type.Array(AlertHistoryView) });

/** Body POSTed to a webhook. The receiver dedups on idempotencyKey (also sent as the Idempotency-Key header). */
export const WebhookBody = Type.Object({
  idempotencyKey: Type.String(),
  change: Type.Enum(ALERT_CHANGES),
  at: Iso,
  alert: AlertView,
});
export type WebhookBody = Static<typeof WebhookBody>;

const WebhookName = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' });

/**
 * An alert notify job's data: no URL and no secret (those are looked up by webhook name at delivery time). `kind`
 * is absent in jobs queued before demand-response notifications existed.
 */
export const AlertNotifyJob = Type.Object({
  kind: Type.Optional(Type.Literal('alert')),
  webhook: WebhookName,
  idempotencyKey: Type.String({ minLength: 1 }),
  change: Type.Enum(ALERT_CHANGES),
  at: Ms,
  alert: AlertRecord,
});
export type AlertNotifyJob = Static<typeof AlertNotifyJob>;

/** The `notify` queue's job data: an alert change or a demand-response event, each with its own webhook body. */
export const NotifyJob = Type.Union([AlertNotifyJob, DrNotifyJob]);
export type NotifyJob = Static<typeof NotifyJob>;

/** A dead letter's `change`: an alert change, or `dr_event` for a demand-response notification. */
export const NOTIFY_CHANGES = [...ALERT_CHANGES, 'dr_event'] as const;

/** A delivery that used up its attempts (or was refused for good), kept for operators. */
export const DeadLetter = Type.Object({
  jobId: Type.String(),
  webhook: Type.String(),
  idempotencyKey: Type.String(),
  /** The alert's id; for `dr_event`, the demand-response event's id. */
  alertId: Type.String(),
  change: Type.Enum(NOTIFY_CHANGES),
  attempts: Type.Integer(),
  error: Type.String(),
  failedAt: Iso,
});
export type DeadLetter = Static<typeof DeadLetter>;

/** The stream worker's DetectionEvent, checked at the alert service's edge (BullMQ job data is untrusted). */
export const DetectionEventPayload = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 512 }),
  type: AnomalyTypeSchema,
  status: Type.Enum(['firing', 'clear'] as const),
  subjectKind: Type.Enum(['meter', 'customer', 'transformer', 'system'] as const),
  subject: Type.String({ minLength: 1, maxLength: 128 }),
  ts: Type.Number(),
  meterId: Type.Optional(Type.String()),
  customerId: Type.Optional(Type.String()),
  transformerId: Type.Optional(Type.String()),
  feederId: Type.Optional(Type.String()),
  customerClass: Type.Optional(Type.String()),
  value: Type.Number(),
  expected: Type.Number(),
  score: Type.Number(),
  severity: SeveritySchema,
  reason: Type.String({ maxLength: 2048 }),
});
// Compile-time guard: the schema stays in step with the contract interface.
const _sameShape: (e: Static<typeof DetectionEventPayload>) => DetectionEvent = (e) => e;
void _sameShape;

// --- API bodies ---------------------------------------------------------------------------------------------

/** Which alerts an outage covers (`suppressedBy` set) a list shows. */
export const SUPPRESSED_FILTERS = ['exclude', 'include', 'only'] as const;
export type SuppressedFilter = (typeof SUPPRESSED_FILTERS)[number];

const STATE_LIST = `(${ALERT_STATES.join('|')})`;

export const AlertListQuery = Type.Object({
  state: Type.Optional(
    Type.String({ pattern: `^${STATE_LIST}(,${STATE_LIST})*$`, maxLength: 64, description: 'one state or a comma-separated list (open,acknowledged)' }),
  ),
  type: Type.Optional(AnomalyTypeSchema),
  severity: Type.Optional(SeveritySchema),
  subject: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  since: Type.Optional(Type.String({ description: 'ISO-8601 time or epoch ms: alerts last seen at or after it' })),
  feeder: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'feederId' })),
  transformer: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'transformerId' })),
  class: Type.Optional(Type.Enum(CUSTOMER_CLASSES, { description: 'customerClass' })),
  suppressed: Type.Optional(
    Type.Enum(SUPPRESSED_FILTERS, {
      default: 'exclude',
      description: 'alerts an outage covers (suppressedBy set): hidden by default, `include` shows them too, `only` only them',
    }),
  ),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
  cursor: Type.Optional(Type.String({ maxLength: 256 })),
});
export type AlertListQuery = Static<typeof AlertListQuery>;

export const AlertPage = Type.Object({
  items: Type.Array(AlertView),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});

export const AlertIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

const By = Type.String({ minLength: 1, maxLength: 128, description: 'who acts (operator name); defaults to `operator`' });
const Comment = Type.String({ maxLength: 1000, description: 'kept in the alert history; empty or blank: none' });

export const AlertActionBody = Type.Object({
  by: Type.Optional(By),
  comment: Type.Optional(Comment),
});
export type AlertActionBody = Static<typeof AlertActionBody>;

export const AlertAssignBody = Type.Object({
  assignee: Type.String({ minLength: 1, maxLength: 100 }),
  by: Type.Optional(By),
  comment: Type.Optional(Comment),
});
export type AlertAssignBody = Static<typeof AlertAssignBody>;

export const AlertCommentBody = Type.Object({
  text: Type.String({ minLength: 1, maxLength: 1000 }),
  by: Type.Optional(By),
});
export type AlertCommentBody = Static<typeof AlertCommentBody>;

export const DeadLetterPage = Type.Object({
  items: Type.Array(DeadLetter),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});
