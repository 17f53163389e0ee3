import { Type, type Static } from 'typebox';
import { ALERT_CHANGES } from './alert.js';
import { ANOMALY_TYPES, SEVERITIES } from './events.js';
import { CUSTOMER_CLASSES } from './registry.js';

// Type.Enum keeps the literal union in the static type (a Union of a mapped array widens to never).
const AnomalyType = Type.Enum(ANOMALY_TYPES);
const Severity = Type.Enum(SEVERITIES);
const CustomerClass = Type.Enum(CUSTOMER_CLASSES);
const Change = Type.Enum(ALERT_CHANGES);
const ClockTime = Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'HH:MM local time' });

/** Per anomaly type overrides of the lifecycle defaults. */
export const TypeOverride = Type.Object(
  {
    /** Replaces the severity the detection rule suggested (before the customer-class raise). */
    severity: Type.Optional(Severity),
    /** Intervals the condition must stay clear before the alert auto-resolves. */
    clearIntervals: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
    /** Intervals (event time) to hold the first notification, so an outage can absorb it. */
    holdIntervals: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
  },
  { additionalProperties: false },
);
export type TypeOverride = Static<typeof TypeOverride>;

export const WebhookConfig = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    url: Type.String({ pattern: '^https?://' }),
    /** Environment variable holding the HMAC secret (the secret itself never lives in config files). */
    secretEnv: Type.String({ pattern: '^[A-Z_][A-Z0-9_]*$' }),
  },
  { additionalProperties: false },
);
export type WebhookConfig = Static<typeof WebhookConfig>;

/** Which alert changes go to which webhook; an empty list matches everything. */
export const RouteConfig = Type.Object(
  {
    webhook: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    severities: Type.Array(Severity),
    types: Type.Array(AnomalyType),
    customerClasses: Type.Array(CustomerClass),
    changes: Type.Array(Change),
  },
  { additionalProperties: false },
);
export type RouteConfig = Static<typeof RouteConfig>;

/** config/alerts.yaml */
export const AlertsConfig = Type.Object(
  {
    lifecycle: Type.Object(
      {
        clearIntervals: Type.Integer({ minimum: 0, maximum: 10_000 }),
        flapWindowHours: Type.Number({ exclusiveMinimum: 0 }),
        defaultIntervalMinutes: Type.Integer({ minimum: 1, maximum: 1440 }),
        holdWallSeconds: Type.Number({ minimum: 0 }),
        retentionDays: Type.Number({ exclusiveMinimum: 0 }),
      },
      { additionalProperties: false },
    ),
    types: Type.Partial(Type.Record(AnomalyType, TypeOverride), { additionalProperties: false }),
    /** Severity levels added for a customer class (critical customers: hospitals, water, public safety). */
    classRaise: Type.Partial(Type.Record(CustomerClass, Type.Integer({ minimum: -3, maximum: 3 })), { additionalProperties: false }),
    outage: Type.Object(
      {
        enabled: Type.Boolean(),
        minMeters: Type.Integer({ minimum: 1 }),
        minRatio: Type.Number({ minimum: 0, maximum: 1 }),
        windowIntervals: Type.Integer({ minimum: 1 }),
        /** The outage is over once the meters still down are at most this share of the transformer. */
        resolveBelowRatio: Type.Number({ minimum: 0, maximum: 1 }),
        severity: Severity,
        suppressTypes: Type.Array(AnomalyType),
      },
      { additionalProperties: false },
    ),
    webhooks: Type.Array(WebhookConfig),
    routes: Type.Array(RouteConfig),
    quietHours: Type.Object(
      {
        enabled: Type.Boolean(),
        start: ClockTime,
        end: ClockTime,
        severities: Type.Array(Severity),
        /** defer: deliver when quiet hours end; drop: never deliver (the alert stays visible in the API). */
        action: Type.Enum(['defer', 'drop'] as const),
      },
      { additionalProperties: false },
    ),
    notify: Type.Object(
      {
        attempts: Type.Integer({ minimum: 1, maximum: 100 }),
        backoffMs: Type.Integer({ minimum: 1 }),
        /** Retries never wait longer than this: a receiver back after an outage hears within it. */
        maxBackoffMs: Type.Integer({ minimum: 1 }),
        timeoutMs: Type.Integer({ minimum: 100 }),
        concurrency: Type.Integer({ minimum: 1, maximum: 256 }),
      },
      { additionalProperties: false },
    ),
    worker: Type.Object(
      {
        eventsConcurrency: Type.Integer({ minimum: 1, maximum: 256 }),
        sweepSeconds: Type.Number({ exclusiveMinimum: 0 }),
        /** How long an applied event id is remembered, so a retried job never counts twice. */
        dedupHours: Type.Number({ exclusiveMinimum: 0 }),
        /** BullMQ lock duration / stalled check: how soon a crashed worker's job is taken over. */
        lockSeconds: Type.Number({ minimum: 1 }),
      },
      { additionalProperties: false },
    ),
    influx: Type.Object({ enabled: Type.Boolean() }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);
export type AlertsConfig = Static<typeof AlertsConfig>;
