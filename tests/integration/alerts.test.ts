import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { Compile } from 'typebox/compile';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAlerts, type AlertsHandle } from '../../src/alerts/main.js';
import { buildApp } from '../../src/api/app.js';
import { DeadLetter, EVENTS_QUEUE, type AlertRecord } from '../../src/contracts/alert.js';
import { AlertsConfig } from '../../src/contracts/config-alerts.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import type { AnomalyType, DetectionEvent, Severity } from '../../src/contracts/events.js';
import { CustomerRecord } from '../../src/contracts/registry.js';
import { loadConfig, loadSection, type AppConfig } from '../../src/shared/config.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { createLogger, type Logger } from '../../src/shared/logger.js';
import { createMetrics } from '../../src/shared/metrics.js';
import { closeRedis, createRedis, queuePrefix } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { startInflux, startRedis, uniquePrefix, type LocalService } from '../helpers/services.js';
import { startWebhookReceiver, type Responder, type WebhookReceiver } from '../helpers/webhook-receiver.js';

const SECRET = 'whsec-test-0123456789abcdef';
const MIN = 60_000;
const IV = 15 * MIN;
const T0 = Date.UTC(2026, 10, 26, 2, 0);
const READER = 'reader-token-0001';
const WRITER = 'writer-token-0001';
const BILLING = 'billing-token-0001';

const base = loadSection('alerts', AlertsConfig, {});
const checkCustomer = Compile(CustomerRecord);

function alertsCfg(url: string, over: { attempts?: number; influx?: boolean; notifyConcurrency?: number } = {}): AlertsConfig {
  return {
    ...base,
    webhooks: [{ name: 'ops', url, secretEnv: 'MF_WEBHOOK_OPS_SECRET' }],
    routes: [{ webhook: 'ops', severities: [], types: [], customerClasses: [], changes: ['opened', 'escalated', 'flapping', 'resolved'] }],
    quietHours: { ...base.quietHours, enabled: false },
    notify: { attempts: over.attempts ?? 5, backoffMs: 100, maxBackoffMs: 5000, timeoutMs: 2000, concurrency: over.notifyConcurrency ?? 4 },
    worker: { eventsConcurrency: 8, sweepSeconds: 0.2, dedupHours: 1, lockSeconds: 5 },
    influx: { enabled: over.influx ?? false },
  };
}

function event(type: AnomalyType, subject: string, ts: number, status: 'firing' | 'clear' = 'firing', over: Partial<DetectionEvent> = {}): DetectionEvent {
  return {
    id: `${type}:${subject}:${ts}:${status}`,
    type,
    status,
    subjectKind: 'meter',
    subject,
    ts,
    meterId: subject,
    value: 1800,
    expected: 290,
    score: 6.2,
    severity: 'warning' satisfies Severity,
    reason: `${type} on ${subject}`,
    ...over,
  };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A field of a received webhook body (parsed JSON, so checked step by step). */
function bodyField(json: unknown, ...path: string[]): unknown {
  let v = json;
  for (const k of path) v = v !== null && typeof v === 'object' && k in v ? Object.getOwnPropertyDescriptor(v, k)?.value : undefined;
  return v;
}

describe('alerts role (real Redis, BullMQ, HTTP receiver)', () => {
  let redisSrv: LocalService;
  let influxSrv: LocalService;
  let redis: Redis;
  const log = createLogger({ level: 'error' });
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    [redisSrv, influxSrv] = await Promise.all([startRedis(), startInflux()]);
    redis = createRedis(redisSrv.url, 'test');
  });

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await closeRedis(redis);
    await Promise.all([redisSrv?.destroy(), influxSrv?.destroy()]);
  });

  function appConfig(extra: Record<string, string> = {}): AppConfig {
    return loadConfig({ REDIS_URL: redisSrv.url, INFLUX_URL: influxSrv.url, INFLUX_API: 'v1', MF_INSTANCE: 'test', ...extra });
  }

  interface Harness {
    handles: AlertsHandle[];
    receiver: WebhookReceiver;
    events: Queue;
    keyPrefix: string;
    send(evs: DetectionEvent[]): Promise<void>;
    setWatermark(ms: number): Promise<void>;
    alert(key: string): Promise<AlertRecord | undefined>;
  }

  async function harness(
    opts: { responder?: Responder; workers?: number; attempts?: number; influxDb?: string; keyPrefix?: string; notifyConcurrency?: number; log?: Logger } = {},
  ): Promise<Harness> {
    const receiver = await startWebhookReceiver(SECRET, opts.responder);
    const keyPrefix = opts.keyPrefix ?? uniquePrefix('al');
    const queueBase = uniquePrefix('bq');
    const config = appConfig(opts.influxDb ? { INFLUX_BUCKET: opts.influxDb } : {});
    const cfg = alertsCfg(receiver.url, { attempts: opts.attempts, influx: opts.influxDb !== undefined, notifyConcurrency: opts.notifyConcurrency });
    const handles: AlertsHandle[] = [];
    for (let i = 0; i < (opts.workers ?? 1); i++) {
      handles.push(
        await startAlerts(
          { config, log: opts.log ?? log, metrics: createMetrics() },
          { alerts: cfg, env: { MF_WEBHOOK_OPS_SECRET: SECRET }, keyPrefix, queuePrefix: queueBase },
        ),
      );
    }
    const events = new Queue(EVENTS_QUEUE, { connection: redis, prefix: queuePrefix(EVENTS_QUEUE, queueBase) });
    cleanups.push(async () => {
      for (const h of handles) await h.close();
      await events.close();
      await receiver.close();
    });
    const first = handles[0];
    if (first === undefined) throw new Error('no alerts handle');
    return {
      handles,
      receiver,
      events,
      keyPrefix,
      async send(evs) {
        // As the stream worker enqueues them: jobId = event id with ':' mapped to '|'.
        await events.addBulk(evs.map((e) => ({ name: e.type, data: e, opts: { jobId: e.id.replaceAll(':', '|') } })));
      },
      async setWatermark(ms) {
        const shards = Object.fromEntries(Array.from({ length: config.streamShards }, (_, s) => [String(s), String(ms)]));
        await redis.hset(`${keyPrefix}:watermark`, shards);
      },
      alert: (key) => first.store.getByKey(key),
    };
  }

  it('100 identical events from two racing workers → one alert, count 100, one signed notification, one alert point', async () => {
    const db = uniquePrefix('alertdb');
    const h = await harness({ workers: 2, influxDb: db });
    await h.send(Array.from({ length: 100 }, (_, i) => event('spike', 'M-100', T0 + i * IV)));
    const a = await waitFor('count 100', async () => {
      const x = await h.alert('spike:M-100');
      return x?.count === 100 ? x : undefined;
    });
    expect(a).toMatchObject({ state: 'open', count: 100, firstSeen: T0, lastSeen: T0 + 99 * IV, flapping: false });
    await waitFor('one delivery', () => h.receiver.deliveries.size === 1);
    await sleep(1500); // sweeps, dispatch and any retry would have shown by now
    expect(h.receiver.requests.length).toBe(1);
    const req = h.receiver.requests[0];
    expect(req?.verified).toBe(true);
    expect(req?.json).toMatchObject({
      change: 'opened',
      idempotencyKey: `${a.id}.1.opened`,
      alert: { id: a.id, key: 'spike:M-100', state: 'open', type: 'spike' },
    });
    expect(await h.handles[0]?.store.list({ type: 'spike' }, 10, undefined)).toMatchObject({ items: [{ id: a.id }], nextCursor: null });

    for (const x of h.handles) await x.close(); // flushes the InfluxDB writer
    const influx = await createInflux(appConfig({ INFLUX_BUCKET: db }).influx, log);
    const series = await influx.query(`SELECT "change", "count", "alert_id", "state" FROM "alert" WHERE "subject" = 'M-100'`);
    // One point, at the event time of the event that opened it (the racing workers decide which one that was).
    expect(series.map((s) => s.values)).toEqual([[[a.episodeStart, 'opened', 1, a.id, 'open']]]);
    await influx.close();
  });

  it('60 meters on one transformer gasp and fall silent → exactly one outage alert, no per-meter notification; restored with its figures', async () => {
    const tid = uniquePrefix('T');
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    // Checked against the contract like any registry import (this also narrows the plain objects to its type).
    const meters = Array.from({ length: 60 }, (_, i): unknown => ({
      meterId: `${tid}-M${i}`,
      customerId: `${tid}-C${i}`,
      class: i === 5 || i === 33 ? 'critical' : 'residential',
      tariff: 'default',
      contractKw: 10,
      feederId: 'F-7',
      transformerId: tid,
      hasPv: false,
      intervalMinutes: 15,
    })).filter((m): m is CustomerRecord => checkCustomer.Check(m));
    expect(meters.length).toBe(60);
    await registry.upsertMeters(meters);
    await registry.upsertTransformers([{ transformerId: tid, feederId: 'F-7', ratingKva: 400 }]);
    const h = await harness({ workers: 2 });
    const ids = meters.map((m) => m.meterId);
    const meterEvent = (type: AnomalyType, m: string, ts: number, status: 'firing' | 'clear' = 'firing'): DetectionEvent =>
      event(type, m, ts, status, {
        transformerId: tid,
        feederId: 'F-7',
        customerClass: m.endsWith('M5') || m.endsWith('M33') ? 'critical' : 'residential',
        value: 0,
        expected: 0,
        score: 0,
        reason: type,
      });

    await h.setWatermark(T0 - IV);
    await h.send(ids.map((m, i) => meterEvent('lastGasp', m, T0 + i * 250)));
    const outage = await waitFor('outage with 60 meters', async () => {
      const o = await h.alert(`outage:${tid}`);
      return o?.count === 60 ? o : undefined;
    });
    await h.setWatermark(T0 + 2 * IV);
    await h.send(ids.map((m) => meterEvent('silent', m, T0 + 3 * IV)));
    const store = h.handles[0]?.store;
    if (!store) throw new Error('no store');
    await waitFor('60 silent alerts', async () => (await store.list({ type: 'silent' }, 100, undefined)).items.length === 60);
    await h.setWatermark(T0 + 6 * IV);
    await h.handles[0]?.sweepNow();
    await sleep(1500);

    // The outage is told once. If the racing workers opened it before a critical customer's meter was among the
    // affected, it opened as major and its escalation to critical is told as well; nothing else is.
    const storm = h.receiver.requests.length;
    const openedAs = bodyField(h.receiver.requests[0]?.json, 'alert', 'severity');
    expect(h.receiver.requests.map((r) => bodyField(r.json, 'change'))).toEqual(openedAs === 'critical' ? ['opened'] : ['opened', 'escalated']);
    expect(h.receiver.requests.every((r) => bodyField(r.json, 'alert', 'id') === outage.id)).toBe(true);
    expect(outage).toMatchObject({ type: 'outage', subjectKind: 'transformer', state: 'open', severity: 'critical', customerClass: 'critical', firstSeen: T0 });
    const silent = (await store.list({ type: 'silent' }, 100, undefined)).items;
    expect(silent.filter((s) => s.suppressedBy === outage.id && !s.notified).length).toBe(60);
    const gasps = (await store.list({ type: 'lastGasp' }, 100, undefined)).items;
    expect(gasps.filter((s) => s.suppressedBy === outage.id && !s.notified && s.state === 'open').length).toBe(60);
    expect((await store.list({ type: 'outage' }, 100, undefined)).items.length).toBe(1);

    const back = T0 + 95 * MIN;
    await h.send(ids.map((m) => meterEvent('powerRestored', m, back)));
    const resolved = await waitFor('outage resolved', async () => {
      const o = await h.alert(`outage:${tid}`);
      return o?.state === 'resolved' ? o : undefined;
    });
    await waitFor('the resolution notice', () => h.receiver.deliveries.size === storm + 1);
    await h.send(ids.map((m) => meterEvent('silent', m, back + IV, 'clear')));
    await h.setWatermark(back + 10 * IV);
    await h.handles[0]?.sweepNow();
    await sleep(1500);

    expect(resolved.id).toBe(outage.id);
    expect(resolved.outage).toEqual({
      transformerId: tid,
      feederId: 'F-7',
      metersTotal: 60,
      metersAffected: 60,
      customersAffected: 60,
      criticalCustomers: [`${tid}-C33`, `${tid}-C5`],
      startedAt: T0,
      restoredAt: back,
      durationMs: 95 * MIN,
      stillDown: 6,
      affectedMeters: [...ids].sort(),
      affectedCustomers: meters.map((m) => m.customerId).sort(),
    });
    expect(h.receiver.requests.length).toBe(storm + 1);
    expect(h.receiver.requests[storm]?.json).toMatchObject({
      change: 'resolved',
      alert: { id: outage.id, state: 'resolved', outage: { durationMs: 95 * MIN, customersAffected: 60 } },
    });
    expect(h.receiver.requests.every((r) => r.verified)).toBe(true);
    const stillOpen = (await store.list({ state: 'open' }, 500, undefined)).items.filter((a) => a.subject.startsWith(tid) || a.subject === tid);
    expect(stillOpen).toEqual([]);
  });

  it('the receiver answers 500 three times → delivered on the 4th try with the same key, every signature verifies; no secret in the logs', async () => {
    const lines: string[] = [];
    const captured = createLogger({ level: 'debug', destination: { write: (l: string) => void lines.push(l) } });
    const h = await harness({ responder: (n) => (n <= 3 ? 500 : 200), log: captured });
    await h.send([event('reverseFlow', 'M-R1', T0, 'firing', { severity: 'major' })]);
    await waitFor('delivery', () => h.receiver.deliveries.size === 1);
    await sleep(1000);
    const reqs = h.receiver.requests;
    expect(reqs.map((r) => r.status)).toEqual([500, 500, 500, 200]);
    expect(reqs.every((r) => r.verified)).toBe(true);
    expect(new Set(reqs.map((r) => r.idempotencyKey)).size).toBe(1);
    const a = await h.alert('reverseFlow:M-R1');
    expect(reqs[3]?.idempotencyKey).toBe(`${a?.id}.1.opened`);
    expect((await h.handles[0]?.store.deadLetters(10, 0))?.items).toEqual([]);
    expect(lines.filter((l) => l.includes('"msg":"notification failed, will retry"')).length).toBe(3);
    expect(lines.filter((l) => l.includes('"msg":"notification delivered"')).length).toBe(1);
    expect(lines.join('\n')).not.toContain(SECRET);
  });

  it('critical customers are notified first', async () => {
    let hold: () => void = () => undefined;
    const held = new Promise<void>((r) => (hold = r));
    // The first delivery is held while the rest queue up behind it; the single notify slot then picks by priority.
    const h = await harness({
      notifyConcurrency: 1,
      responder: async (n) => {
        if (n === 1) await held;
        return 200;
      },
    });
    await h.send([event('spike', 'M-P0', T0)]);
    await waitFor('first request', () => h.receiver.requests.length === 1);
    await h.send([
      ...Array.from({ length: 10 }, (_, i) => event('spike', `M-P${i + 1}`, T0, 'firing', { customerClass: 'residential' })),
      event('spike', 'M-PC', T0, 'firing', { customerClass: 'critical', reason: 'hospital' }),
    ]);
    await waitFor('12 alerts', async () => (await h.handles[0]?.store.list({ type: 'spike' }, 50, undefined))?.items.length === 12);
    await sleep(500); // the dispatcher has enqueued every change by now
    hold();
    await waitFor('12 deliveries', () => h.receiver.deliveries.size === 12);
    const subjects = h.receiver.requests.map((r) => bodyField(r.json, 'alert', 'subject'));
    expect(subjects.slice(0, 2)).toEqual(['M-P0', 'M-PC']);
    expect(await h.alert('spike:M-PC')).toMatchObject({ severity: 'major', customerClass: 'critical' });
    expect(await h.alert('spike:M-P1')).toMatchObject({ severity: 'warning', customerClass: 'residential' });
  });

  it('firing and clear of 50 alerts in one batch, clears first, two racing workers: every alert still resolves', async () => {
    const h = await harness({ workers: 2 });
    const meters = Array.from({ length: 50 }, (_, i) => `M-O${i}`);
    await h.setWatermark(T0);
    await h.send([...meters.map((m) => event('drop', m, T0 + IV, 'clear')), ...meters.map((m) => event('drop', m, T0))]);
    const store = h.handles[0]?.store;
    if (!store) throw new Error('no store');
    await waitFor('50 alerts', async () => (await store.list({ type: 'drop' }, 100, undefined)).items.length === 50);
    await h.setWatermark(T0 + 3 * IV);
    await h.handles[0]?.sweepNow();
    const all = (await store.list({ type: 'drop' }, 100, undefined)).items;
    expect(all.filter((a) => a.state === 'resolved' && a.resolvedAt === T0 + 3 * IV).length).toBe(50);
    expect(await redis.hlen(store.keys.doc)).toBe(100); // 50 alerts + 50 pointers: every clear mark was spent
  });

  it('hysteresis and flapping in event time through the worker: resolved after 2 clear intervals, re-open is the same flapping alert, notified once', async () => {
    const h = await harness();
    await h.setWatermark(T0);
    await h.send([event('voltage', 'M-V1', T0)]);
    await waitFor('open', async () => (await h.alert('voltage:M-V1'))?.state === 'open');
    await h.send([event('voltage', 'M-V1', T0 + IV, 'clear')]);
    await waitFor('clear noted', async () => (await h.alert('voltage:M-V1'))?.clearSince === T0 + IV);
    await h.setWatermark(T0 + 3 * IV - 1);
    await h.handles[0]?.sweepNow();
    expect((await h.alert('voltage:M-V1'))?.state).toBe('open');
    await h.setWatermark(T0 + 3 * IV);
    await h.handles[0]?.sweepNow();
    const resolved = await h.alert('voltage:M-V1');
    expect(resolved).toMatchObject({ state: 'resolved', resolvedAt: T0 + 3 * IV, resolvedBy: 'auto' });
    for (let k = 0; k < 3; k++) {
      const t = T0 + (4 + 4 * k) * IV;
      await h.send([event('voltage', 'M-V1', t)]);
      await waitFor('re-open', async () => (await h.alert('voltage:M-V1'))?.state === 'open');
      await h.send([event('voltage', 'M-V1', t + IV, 'clear')]);
      await waitFor('clear noted', async () => (await h.alert('voltage:M-V1'))?.clearSince === t + IV);
      await h.setWatermark(t + 3 * IV);
      await h.handles[0]?.sweepNow();
    }
    const a = await h.alert('voltage:M-V1');
    expect(a).toMatchObject({ id: resolved?.id, state: 'resolved', flapping: true, flapCount: 3, count: 4 });
    await waitFor('3 deliveries', () => h.receiver.deliveries.size === 3);
    await sleep(800);
    expect(h.receiver.requests.map((r) => bodyField(r.json, 'change'))).toEqual(['opened', 'resolved', 'flapping']);
  });

  it('a dead webhook: dead-lettered after the last attempt and listed by the API; alerts API with tokens, filters, paging, ack and resolve', async () => {
    // The API reads the default key prefix, so this test owns it on this private Redis.
    const h = await harness({ responder: () => 503, attempts: 3, keyPrefix: 'mf' });
    const config = appConfig({ API_TOKENS: JSON.stringify({ [READER]: [], [WRITER]: ['alerts:write'], [BILLING]: ['billing:read'] }) });
    const influx: Influx = await createInflux(config.influx, log);
    const app = await buildApp({
      config,
      log,
      metrics: createMetrics(),
      redis,
      influx,
      registry: new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults),
    });
    cleanups.push(async () => {
      await app.close();
      await influx.close();
    });
    await h.send([
      event('spike', 'M-A1', T0),
      event('spike', 'M-A2', T0 + IV, 'firing', { severity: 'major' }),
      event('flatline', 'M-A3', T0 + 2 * IV),
      event('spike', 'M-A1', T0 + 3 * IV),
    ]);
    await waitFor(
      'alerts',
      async () => (await h.alert('spike:M-A1'))?.count === 2 && (await h.alert('flatline:M-A3')) !== undefined && (await h.alert('spike:M-A2')) !== undefined,
    );

    const get = (url: string, token?: string) => app.inject({ method: 'GET', url, headers: token ? { authorization: `Bearer ${token}` } : {} });
    const post = (url: string, token: string, body?: object) =>
      app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}` }, ...(body ? { payload: body } : {}) });

    expect((await get('/api/v1/alerts')).statusCode).toBe(401);
    expect((await get('/api/v1/alerts', 'not-a-known-token')).statusCode).toBe(401);
    const all = await get('/api/v1/alerts', READER);
    expect(all.statusCode).toBe(200);
    // Newest first by first event time.
    expect(all.json().items.map((a: { key: string }) => a.key)).toEqual(['flatline:M-A3', 'spike:M-A2', 'spike:M-A1']);
    expect(all.json().items[2]).toMatchObject({
      count: 2,
      firstSeen: new Date(T0).toISOString(),
      lastSeen: new Date(T0 + 3 * IV).toISOString(),
      state: 'open',
      flapping: false,
      severity: 'warning',
    });

    const page1 = (await get('/api/v1/alerts?type=spike&limit=1', READER)).json();
    expect(page1.items.map((a: { key: string }) => a.key)).toEqual(['spike:M-A2']);
    expect(typeof page1.nextCursor).toBe('string');
    const page2 = (await get(`/api/v1/alerts?type=spike&limit=1&cursor=${page1.nextCursor}`, READER)).json();
    expect(page2).toMatchObject({ items: [{ key: 'spike:M-A1' }], nextCursor: null });
    expect((await get('/api/v1/alerts?severity=major', READER)).json().items.map((a: { key: string }) => a.key)).toEqual(['spike:M-A2']);
    expect((await get('/api/v1/alerts?subject=M-A3', READER)).json().items.length).toBe(1);
    expect((await get(`/api/v1/alerts?since=${new Date(T0 + 2 * IV).toISOString()}`, READER)).json().items.map((a: { key: string }) => a.key)).toEqual([
      'flatline:M-A3',
      'spike:M-A1',
    ]);
    expect((await get(`/api/v1/alerts?since=${T0 + 2 * IV + 1}`, READER)).json().items.map((a: { key: string }) => a.key)).toEqual(['spike:M-A1']);
    expect((await get('/api/v1/alerts?since=yesterday', READER)).statusCode).toBe(400);
    expect((await get('/api/v1/alerts?cursor=bogus', READER)).statusCode).toBe(400);
    expect((await get('/api/v1/alerts?state=closed', READER)).statusCode).toBe(400);

    const a1 = await h.alert('spike:M-A1');
    if (!a1) throw new Error('missing alert');
    expect((await get(`/api/v1/alerts/${a1.id}`, READER)).json()).toMatchObject({ id: a1.id, key: 'spike:M-A1', count: 2 });
    expect((await get('/api/v1/alerts/000000000-0000000000000000', READER)).statusCode).toBe(404);
    expect((await post(`/api/v1/alerts/${a1.id}/ack`, READER)).statusCode).toBe(403);
    expect((await post(`/api/v1/alerts/${a1.id}/ack`, BILLING)).statusCode).toBe(403);
    const acked = await post(`/api/v1/alerts/${a1.id}/ack`, WRITER, { by: 'alice' });
    expect(acked.statusCode).toBe(200);
    expect(acked.json()).toMatchObject({ state: 'acknowledged', acknowledgedBy: 'alice' });
    expect((await post(`/api/v1/alerts/${a1.id}/ack`, WRITER)).json()).toMatchObject({ state: 'acknowledged', acknowledgedBy: 'alice' });
    expect((await get('/api/v1/alerts?state=acknowledged', READER)).json().items.map((a: { id: string }) => a.id)).toEqual([a1.id]);
    const res = await post(`/api/v1/alerts/${a1.id}/resolve`, WRITER, { by: 'bob' });
    expect(res.json()).toMatchObject({ state: 'resolved', resolvedBy: 'operator', resolvedByName: 'bob', resolvedAt: new Date(T0 + 3 * IV).toISOString() });
    expect((await post(`/api/v1/alerts/${a1.id}/ack`, WRITER)).statusCode).toBe(409);
    expect((await post('/api/v1/alerts/000000000-0000000000000000/resolve', WRITER)).statusCode).toBe(404);

    // Every delivery to the dead webhook: 3 attempts each, then a dead letter per notification.
    await waitFor('dead letters', async () => (await h.handles[0]?.store.deadLetters(100, 0))?.items.length === 4 || undefined, 30_000);
    const dl = await get('/api/v1/notifications/dead-letters?limit=3', READER);
    expect(dl.statusCode).toBe(200);
    expect(dl.json().items.length).toBe(3);
    expect(dl.json().nextCursor).toBe('3');
    const rest = (await get('/api/v1/notifications/dead-letters?limit=3&cursor=3', READER)).json();
    expect(rest.items.length).toBe(1);
    expect(rest.nextCursor).toBeNull();
    const letters: unknown[] = [...dl.json().items, ...rest.items];
    const checkDead = Compile(DeadLetter);
    expect(letters.filter((d) => checkDead.Check(d)).length).toBe(4);
    if (!letters.every((d): d is DeadLetter => checkDead.Check(d))) throw new Error('dead letters do not match the schema');
    expect(letters.every((d) => d.attempts === 3 && d.webhook === 'ops' && d.error === 'webhook ops answered 503')).toBe(true);
    expect(letters.map((d) => `${d.change}`).sort()).toEqual(['opened', 'opened', 'opened', 'resolved']);
    expect(h.receiver.requests.length).toBe(12);

    const docs = await get('/docs/json');
    expect(Object.keys(docs.json().paths)).toEqual(
      expect.arrayContaining([
        '/api/v1/alerts',
        '/api/v1/alerts/{id}',
        '/api/v1/alerts/{id}/ack',
        '/api/v1/alerts/{id}/resolve',
        '/api/v1/notifications/dead-letters',
      ]),
    );
  });
});
