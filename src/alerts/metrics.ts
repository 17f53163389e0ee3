import type { Registry } from 'prom-client';
import type { LineWriter } from '../shared/influx.js';
import { int, lp } from '../shared/line-protocol.js';
import type { Logger } from '../shared/logger.js';
import { Counter, Gauge, metric } from '../shared/metrics.js';
import { statsLoop } from '../shared/stats.js';

/** The alerts role's Prometheus metrics (get-or-create: several roles may share a process). */
export function alertsMetrics(metrics: Registry): { events: Counter; conflicts: Counter; notifications: Counter; active: Gauge } {
  return {
    events: metric(
      metrics,
      'meterflow_alert_events_total',
      () =>
        new Counter({
          name: 'meterflow_alert_events_total',
          help: 'Detection events handled by the alert service',
          labelNames: ['outcome'],
          registers: [metrics],
        }),
    ),
    conflicts: metric(
      metrics,
      'meterflow_alert_conflicts_total',
      () =>
        new Counter({
          name: 'meterflow_alert_conflicts_total',
          help: 'Alert commits that lost a race and were retried',
          registers: [metrics],
        }),
    ),
    notifications: metric(
      metrics,
      'meterflow_alert_notifications_total',
      () =>
        new Counter({
          name: 'meterflow_alert_notifications_total',
          help: 'Webhook deliveries by result',
          labelNames: ['result'],
          registers: [metrics],
        }),
    ),
    active: metric(
      metrics,
      'meterflow_alerts_active',
      () =>
        new Gauge({
          name: 'meterflow_alerts_active',
          // suppressed="false" is what operators must act on: an outage counts once, its meters' alerts under "true".
          help: 'Alerts not resolved; suppressed="true": covered by an outage alert (suppressedBy set)',
          labelNames: ['suppressed'],
          registers: [metrics],
        }),
    ),
  };
}

/** What the role did since it started; the `pipeline` points report the deltas. */
export interface AlertTotals {
  events: number;
  changes: number;
  delivered: number;
  retries: number;
  dead: number;
}

/** Pipeline-health points for the dashboard, every 10 s. */
export function alertsPipelineStats(writer: LineWriter, instance: string, totals: AlertTotals, log: Logger): { stop(): void } {
  let prev = { ...totals };
  return statsLoop(
    10,
    log,
    () => {
      const lines = [
        lp(
          'pipeline',
          { role: 'alerts', instance },
          {
            events: int(totals.events - prev.events),
            alert_changes: int(totals.changes - prev.changes),
            notifications: int(totals.delivered - prev.delivered),
            notify_retries: int(totals.retries - prev.retries),
            notify_dead: int(totals.dead - prev.dead),
          },
          Date.now(),
        ),
      ];
      prev = { ...totals };
      return lines;
    },
    (lines) => writer.write(lines),
  );
}
