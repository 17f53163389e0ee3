import { Queue } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { startAlerts } from '../../src/alerts/main.js';
import { EVENTS_QUEUE } from '../../src/contracts/alert.js';
import { AlertsConfig } from '../../src/contracts/config-alerts.js';
import type { DetectionEvent } from '../../src/contracts/events.js';
import { loadConfig, loadSection } from '../../src/shared/config.js';
import { createLogger } from '../../src/shared/logger.js';
import { createMetrics } from '../../src/shared/metrics.js';
import { closeRedis, createRedis, queuePrefix } from '../../src/shared/redis.js';
import { startRedis, uniquePrefix, type LocalService } from '../helpers/services.js';
import { startWebhookReceiver } from '../helpers/webhook-receiver.js';

/**
 * Fault suite: a webhook receiver down for 5 minutes. With the shipped notify settings (config/alerts.yaml: retries
 * capped at maxBackoffMs), every notification of the outage is delivered once it is back, exactly once, and the
 * alert pipeline does not slow down meanwhile.
 */

const SECRET = 'whsec-fault-0123456789abcdef';
const OUTAGE_MS = 5 * 60_000;
const IV = 15 * 60_000;
const T0 = Date.UTC(2026, 10, 26, 2, 0);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function spike(meter: string, ts: number): DetectionEvent {
  return {
    id: `spike:${meter}:${ts}:firing`,
    type: 'spike',
    status: 'firing',
    subjectKind: 'meter',
    subject: meter,
    ts,
    meterId: meter,
    value: 1800,
    expected: 290,
    score: 9,
    severity: 'major',
    reason: `spike on ${meter}`,
  };
}

describe('fault suite: webhook down', () => {
  let redisSrv: LocalService | undefined;
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await redisSrv?.destroy();
  });

  it('a receiver down for 5 min gets every notification afterwards, once each, while alerts keep being decided', async () => {
    redisSrv = await startRedis();
    const redis = createRedis(redisSrv.url, 'fault-webhook');
    cleanups.push(() => closeRedis(redis));
    const downUntil = Date.now() + OUTAGE_MS;
    const receiver = await startWebhookReceiver(SECRET, () => (Date.now() < downUntil ? 503 : 200));
    cleanups.push(() => receiver.close());
    const shipped = loadSection('alerts', AlertsConfig, {});
    const cfg: AlertsConfig = {
      ...shipped,
      webhooks: [{ name: 'ops', url: receiver.url, secretEnv: 'MF_WEBHOOK_OPS_SECRET' }],
      routes: [{ webhook: 'ops', severities: [], types: [], customerClasses: [], changes: ['opened'] }],
      quietHours: { ...shipped.quietHours, enabled: false },
      influx: { enabled: false },
    };
    const queueBase = uniquePrefix('bq');
    const handle = await startAlerts(
      {
        config: loadConfig({ REDIS_URL: redisSrv.url, INFLUX_URL: 'http://127.0.0.1:1', MF_INSTANCE: 'fault' }),
        log: createLogger({ level: 'silent' }),
        metrics: createMetrics(),
      },
      { alerts: cfg, env: { MF_WEBHOOK_OPS_SECRET: SECRET }, keyPrefix: uniquePrefix('al'), queuePrefix: queueBase },
    );
    cleanups.push(() => handle.close());
    const events = new Queue(EVENTS_QUEUE, { connection: redis, prefix: queuePrefix(EVENTS_QUEUE, queueBase) });
    cleanups.push(() => events.close());

    // One new alert every 10 s through the outage; each must be decided (opened) within 5 s, notifications or not.
    const meters: string[] = [];
    const slow: string[] = [];
    for (let i = 0; Date.now() < downUntil - 10_000; i++) {
      const meter = `W-${i}`;
      meters.push(meter);
      const sent = Date.now();
      await events.add('spike', spike(meter, T0 + i * IV), { jobId: `spike|${meter}|${T0 + i * IV}|firing` });
      while ((await handle.store.getByKey(`spike:${meter}`))?.state !== 'open') {
        if (Date.now() - sent > 5000) {
          slow.push(meter);
          break;
        }
        await sleep(50);
      }
      await sleep(Math.max(0, 10_000 - (Date.now() - sent)));
    }
    expect(slow).toEqual([]);
    expect(receiver.deliveries.size).toBe(0);
    expect(receiver.requests.length).toBeGreaterThan(meters.length); // retried during the outage

    // Back up: every alert's notification arrives within the retry cap (60 s) plus slack, once.
    const deadline = downUntil + cfg.notify.maxBackoffMs + 30_000;
    while (receiver.deliveries.size < meters.length && Date.now() < deadline) await sleep(500);
    expect(receiver.deliveries.size).toBe(meters.length);
    const accepted = receiver.requests.filter((r) => r.status === 200);
    expect(accepted.length).toBe(meters.length);
    expect(accepted.every((r) => r.verified)).toBe(true);
  }, 600_000);
});
