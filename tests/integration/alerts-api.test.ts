import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import { Compile } from 'typebox/compile';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAlertService } from '../../src/alerting/service.js';
import { type AlertsHandle, startAlerts } from '../../src/alerts/main.js';
import { type ApiApp, buildApp } from '../../src/api/app.js';
import { EVENTS_QUEUE } from '../../src/contracts/alert.js';
import { AlertsConfig } from '../../src/contracts/config-alerts.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import type { AnomalyType, DetectionEvent, Severity } from '../../src/contracts/events.js';
import { CustomerRecord } from '../../src/contracts/registry.js';
import { type AppConfig, loadConfig, loadSection } from '../../src/shared/config.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { createLogger } from '../../src/shared/logger.js';
import { createMetrics } from '../../src/shared/metrics.js';
import { closeRedis, createRedis, queuePrefix } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { freePort, startRedis, uniquePrefix, type LocalService } from '../helpers/services.js';

/**
 * The alerts API an operator console uses, against real Redis and the alerts role: an outage listed as one row
 * (its meters' alerts hidden unless asked for), the new filters with paging, the outage's meters and customers,
 * assignment, comments and the history, and the active-alerts gauge split by suppression.
 */

const MIN = 60_000;
const IV = 15 * MIN;
const T0 = Date.UTC(2026, 10, 26, 2, 0);
const READER = 'reader-token-api-0001';
const WRITER = 'writer-token-api-0001';
const TA = 'T-A';
const TB = 'T-B';
const OUTAGE_METERS = ['MA-1', 'MA-2', 'MA-3', 'MA-4', 'MA-5', 'MA-6'];

const checkCustomer = Compile(CustomerRecord);
const base = loadSection('alerts', AlertsConfig, {});
const log = createLogger({ level: 'error' });

function meter(meterId: string, transformerId: string, feederId: string, cls: string): CustomerRecord {
  const m: unknown = {
    meterId,
    customerId: meterId.replace('M', 'C'),
    class: cls,
    tariff: 'default',
    contractKw: 10,
    feederId,
    transformerId,
    hasPv: false,
    intervalMinutes: 15,
  };
  if (!checkCustomer.Check(m)) throw new Error(`bad test meter ${meterId}`);
  return m;
}

const METERS = [
  ...OUTAGE_METERS.map((id) => meter(id, TA, 'F-A', id === 'MA-3' ? 'commercial' : 'residential')),
  meter('MB-1', TB, 'F-B', 'commercial'),
  meter('MB-2', TB, 'F-B', 'residential'),
];

function event(type: AnomalyType, subject: string, ts: number, over: Partial<DetectionEvent> = {}): DetectionEvent {
  const m = METERS.find((x) => x.meterId === subject);
  return {
    id: `${type}:${subject}:${ts}:${over.status ?? 'firing'}`,
    type,
    status: 'firing',
    subjectKind: 'meter',
    subject,
    ts,
    meterId: subject,
    ...(m ? { transformerId: m.transformerId, feederId: m.feederId, customerClass: m.class } : {}),
    value: 1800,
    expected: 290,
    score: 6.2,
    severity: 'warning' satisfies Severity,
    reason: `${type} on ${subject}`,
    ...over,
  };
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Row {
  id: string;
  key: string;
  state: string;
  suppressedBy: string | null;
}

describe('alerts API for the operator console (real Redis, alerts role)', () => {
  let redisSrv: LocalService;
  let redis: Redis;
  let influx: Influx;
  let app: ApiApp;
  let alerts: AlertsHandle;
  let events: Queue;
  let metrics: Registry;
  let config: AppConfig;
  let registry: RegistryStore;

  beforeAll(async () => {
    redisSrv = await startRedis();
    redis = createRedis(redisSrv.url, 'test');
    registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    await registry.upsertMeters(METERS);
    await registry.upsertTransformers([
      { transformerId: TA, feederId: 'F-A', ratingKva: 400 },
      { transformerId: TB, feederId: 'F-B', ratingKva: 400 },
    ]);
    config = loadConfig({
      REDIS_URL: redisSrv.url,
      INFLUX_URL: `http://127.0.0.1:${await freePort()}`, // never queried here
      INFLUX_API: 'v1',
      MF_INSTANCE: 'test',
      API_TOKENS: JSON.stringify({ [READER]: { id: 'console-r', scopes: [] }, [WRITER]: { id: 'console-w', scopes: ['alerts:write'] } }),
    });
    const queueBase = uniquePrefix('bq');
    const cfg: AlertsConfig = {
      ...base,
      webhooks: [],
      routes: [],
      worker: { eventsConcurrency: 1, sweepSeconds: 3600, dedupHours: 1, lockSeconds: 5 },
      influx: { enabled: false },
    };
    metrics = createMetrics();
    // The API reads the default key prefix; this Redis is private to the file.
    alerts = await startAlerts({ config, log, metrics }, { alerts: cfg, env: {}, keyPrefix: 'mf', queuePrefix: queueBase });
    events = new Queue(EVENTS_QUEUE, { connection: redis, prefix: queuePrefix(EVENTS_QUEUE, queueBase) });
    influx = await createInflux(config.influx, log);
    app = await buildApp({ config, log, metrics: createMetrics(), redis, influx, registry });
    await app.ready();
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await alerts?.close();
    await events?.close();
    await influx?.close();
    if (redis) await closeRedis(redis);
    await redisSrv?.destroy();
  });

  const send = async (evs: DetectionEvent[]): Promise<void> => {
    await events.addBulk(evs.map((e) => ({ name: e.type, data: e, opts: { jobId: e.id.replaceAll(':', '|') } })));
  };
  const setWatermark = (ms: number) =>
    redis.hset('mf:watermark', Object.fromEntries(Array.from({ length: config.streamShards }, (_, s) => [String(s), String(ms)])));
  const get = (url: string, token = READER) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
  const post = (url: string, body: object | undefined, token = WRITER) =>
    app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}` }, ...(body ? { payload: body } : {}) });
  const keys = async (url: string): Promise<string[]> => {
    const res = await get(url);
    expect(res.statusCode).toBe(200);
    return res.json<{ items: Row[] }>().items.map((a) => a.key);
  };
  const gauge = async (): Promise<Record<string, number>> => {
    const values = (await metrics.getSingleMetric('meterflow_alerts_active')?.get())?.values ?? [];
    return Object.fromEntries(values.map((v) => [String(v.labels.suppressed), v.value]));
  };
  const gasps = OUTAGE_METERS.map((m) => `lastGasp:${m}`);

  it('an outage of 6 meters: one row by default, 7 with suppressed=include, its meters with suppressed=only; the gauge counts 1 to act on', async () => {
    await setWatermark(T0 - IV);
    await send(OUTAGE_METERS.map((m, i) => event('lastGasp', m, T0 + i * 1000, { value: 0, expected: 0, score: 0, reason: 'lastGasp' })));
    await waitFor('6 gasp alerts and the outage', async () => (await alerts.store.list({ type: 'lastGasp' }, 10, undefined)).items.length === 6);
    await waitFor('outage of 6', async () => (await alerts.store.getByKey(`outage:${TA}`))?.count === 6);
    // The gasps before the outage opened were held; past their hold the sweep parks them under it.
    await setWatermark(T0 + 2 * IV);
    await alerts.sweepNow();
    const outage = await alerts.store.getByKey(`outage:${TA}`);
    if (!outage) throw new Error('no outage');

    expect(await keys('/api/v1/alerts')).toEqual([`outage:${TA}`]);
    const all = (await get('/api/v1/alerts?suppressed=include')).json<{ items: Row[] }>().items;
    expect(all.length).toBe(7);
    expect(
      all
        .filter((a) => a.suppressedBy === outage.id)
        .map((a) => a.key)
        .sort(),
    ).toEqual(gasps);
    const only = (await get('/api/v1/alerts?suppressed=only')).json<{ items: Row[] }>().items;
    expect(only.map((a) => a.key).sort()).toEqual(gasps);
    expect(only.every((a) => a.suppressedBy === outage.id && a.state === 'open')).toBe(true);
    expect(await keys('/api/v1/alerts?state=open')).toEqual([`outage:${TA}`]);
    expect((await get('/api/v1/alerts?suppressed=some')).statusCode).toBe(400);

    expect(await gauge()).toEqual({ false: 1, true: 6 });
    const text = await metrics.getSingleMetricAsString('meterflow_alerts_active');
    expect(text.split('\n')).toEqual(expect.arrayContaining(['meterflow_alerts_active{suppressed="false"} 1', 'meterflow_alerts_active{suppressed="true"} 6']));

    // Alerts written before the actionable index existed: a store rebuilds it once, from the records.
    await redis.del('mf:{alerts}:actionable', 'mf:{alerts}:layout');
    const { store: fresh } = createAlertService(redis, registry, base, config.streamShards, log);
    expect(await fresh.activeCounts()).toEqual({ actionable: 1, suppressed: 6 });
    expect(await redis.zrange('mf:{alerts}:actionable', '0', '-1')).toEqual([outage.id]);
    expect(await redis.get('mf:{alerts}:layout')).toBe('2');
  });

  it('the outage view lists its meters and customers, sorted; the history tells when it opened', async () => {
    const outage = await alerts.store.getByKey(`outage:${TA}`);
    if (!outage) throw new Error('no outage');
    const view = (await get(`/api/v1/alerts/${outage.id}`)).json();
    expect(view.outage).toEqual({
      transformerId: TA,
      feederId: 'F-A',
      metersTotal: 6,
      metersAffected: 6,
      customersAffected: 6,
      criticalCustomers: [],
      startedAt: new Date(T0).toISOString(),
      restoredAt: null,
      durationMs: null,
      stillDown: 0,
      affectedMeters: OUTAGE_METERS,
      affectedCustomers: ['CA-1', 'CA-2', 'CA-3', 'CA-4', 'CA-5', 'CA-6'],
    });
    expect(view).toMatchObject({ assignee: null, assignedAt: null, assignedBy: null, feederId: 'F-A', transformerId: TA });
    // Opened when the 5th gasp tipped it over, as of the first gasp's event time (the outage's start).
    expect((await get(`/api/v1/alerts/${outage.id}/history`)).json()).toEqual({
      items: [{ at: new Date(T0).toISOString(), action: 'opened', by: null, tokenId: null, comment: null }],
    });
  });

  it('filters: feeder, transformer, class and a list of states, with paging inside the filtered scan', async () => {
    await send([event('spike', 'MB-1', T0 + 4 * IV), event('spike', 'MB-2', T0 + 5 * IV), event('flatline', 'MB-2', T0 + 6 * IV)]);
    await waitFor('3 feeder B alerts', async () => (await alerts.store.list({ transformerId: TB }, 10, undefined)).items.length === 3);
    const spikeB2 = await alerts.store.getByKey('spike:MB-2');
    if (!spikeB2) throw new Error('no spike:MB-2');
    expect((await post(`/api/v1/alerts/${spikeB2.id}/ack`, { by: 'carol' })).statusCode).toBe(200);

    expect(await keys('/api/v1/alerts')).toEqual(['flatline:MB-2', 'spike:MB-2', 'spike:MB-1', `outage:${TA}`]);
    expect(await keys('/api/v1/alerts?feeder=F-A')).toEqual([`outage:${TA}`]);
    expect((await keys('/api/v1/alerts?feeder=F-A&suppressed=include')).length).toBe(7);
    expect(await keys('/api/v1/alerts?transformer=T-B')).toEqual(['flatline:MB-2', 'spike:MB-2', 'spike:MB-1']);
    expect(await keys('/api/v1/alerts?feeder=F-B&transformer=T-A')).toEqual([]);
    expect(await keys('/api/v1/alerts?class=commercial')).toEqual(['spike:MB-1']);
    expect(await keys('/api/v1/alerts?class=commercial&suppressed=include')).toEqual(['spike:MB-1', 'lastGasp:MA-3']);
    expect(await keys('/api/v1/alerts?state=acknowledged')).toEqual(['spike:MB-2']);
    expect(await keys('/api/v1/alerts?state=open')).toEqual(['flatline:MB-2', 'spike:MB-1', `outage:${TA}`]);
    expect(await keys('/api/v1/alerts?state=open,acknowledged')).toEqual(['flatline:MB-2', 'spike:MB-2', 'spike:MB-1', `outage:${TA}`]);
    expect(await keys('/api/v1/alerts?state=acknowledged,resolved&transformer=T-B')).toEqual(['spike:MB-2']);
    expect(await keys('/api/v1/alerts?state=resolved')).toEqual([]);
    expect((await get('/api/v1/alerts?state=open,closed')).statusCode).toBe(400);
    expect((await get('/api/v1/alerts?class=hospital')).statusCode).toBe(400);

    // Pages of 2 of the visible rows: the 6 hidden gasps the scan passes never cut a page short.
    type Page = { items: Row[]; nextCursor: string | null };
    for (const q of ['', 'state=open,acknowledged&']) {
      const p1 = (await get(`/api/v1/alerts?${q}limit=2`)).json<Page>();
      expect(p1.items.map((a) => a.key)).toEqual(['flatline:MB-2', 'spike:MB-2']);
      const p2 = (await get(`/api/v1/alerts?${q}limit=2&cursor=${p1.nextCursor}`)).json<Page>();
      expect(p2).toMatchObject({ items: [{ key: 'spike:MB-1' }, { key: `outage:${TA}` }], nextCursor: null });
    }
    const one = (await get('/api/v1/alerts?limit=3')).json<Page>();
    expect(one.items.length).toBe(3);
    expect((await get(`/api/v1/alerts?limit=3&cursor=${one.nextCursor}`)).json<Page>()).toMatchObject({ items: [{ key: `outage:${TA}` }], nextCursor: null });
    // And from the suppressed ones: 4 + 2 of the 6 gasps.
    const s1 = (await get('/api/v1/alerts?suppressed=only&feeder=F-A&limit=4')).json<Page>();
    expect(s1.items.length).toBe(4);
    const s2 = (await get(`/api/v1/alerts?suppressed=only&feeder=F-A&limit=4&cursor=${s1.nextCursor}`)).json<Page>();
    expect(s2.nextCursor).toBeNull();
    expect([...s1.items, ...s2.items].map((a) => a.key).sort()).toEqual(gasps);

    await alerts.sweepNow();
    expect(await gauge()).toEqual({ false: 4, true: 6 });
  });

  it('assign, comment, ack with a comment: in the history in order, with who, the token id and the comment; the assignee survives pipeline updates', async () => {
    const a = await alerts.store.getByKey('spike:MB-1');
    if (!a) throw new Error('no spike:MB-1');
    const url = `/api/v1/alerts/${a.id}`;
    const before = Date.now();

    expect((await post(`${url}/assign`, { assignee: 'alice' }, READER)).statusCode).toBe(403);
    expect((await post(`${url}/assign`, { assignee: '' })).statusCode).toBe(400);
    expect((await post(`${url}/assign`, { assignee: 'x'.repeat(101) })).statusCode).toBe(400);
    expect((await post(`${url}/comment`, { text: 'x'.repeat(1001) })).statusCode).toBe(400);
    expect((await post(`${url}/comment`, { text: '   ' })).statusCode).toBe(400);
    expect((await post('/api/v1/alerts/000000000-0000000000000000/assign', { assignee: 'alice' })).statusCode).toBe(404);
    expect((await get('/api/v1/alerts/000000000-0000000000000000/history')).statusCode).toBe(404);

    const assigned = await post(`${url}/assign`, { assignee: 'alice', by: 'bob', comment: 'on it' });
    expect(assigned.statusCode).toBe(200);
    expect(assigned.json()).toMatchObject({ id: a.id, state: 'open', assignee: 'alice', assignedBy: 'bob' });
    const assignedAt = Date.parse(assigned.json().assignedAt);
    expect(assignedAt >= before && assignedAt <= Date.now()).toBe(true);
    expect((await post(`${url}/comment`, { text: 'crew dispatched', by: 'bob' })).json()).toMatchObject({ id: a.id, assignee: 'alice' });
    expect((await post(`${url}/ack`, { by: 'carol', comment: 'seen' })).json()).toMatchObject({
      state: 'acknowledged',
      acknowledgedBy: 'carol',
      assignee: 'alice',
    });
    // Acknowledged already: no change, but the comment is kept.
    expect((await post(`${url}/ack`, { comment: 'still on it' })).json()).toMatchObject({ state: 'acknowledged', acknowledgedBy: 'carol' });

    // The pipeline: a later event moves count and lastSeen, a stronger one escalates; the assignment stays.
    await send([event('spike', 'MB-1', T0 + 8 * IV), event('spike', 'MB-1', T0 + 9 * IV, { severity: 'critical' })]);
    await waitFor('count 3', async () => (await alerts.store.get(a.id))?.count === 3);
    const updated = (await get(url)).json();
    expect(updated).toMatchObject({ count: 3, state: 'acknowledged', assignee: 'alice', assignedBy: 'bob', lastSeen: new Date(T0 + 9 * IV).toISOString() });
    expect(updated.assignedAt).toBe(assigned.json().assignedAt);

    const resolved = await post(`${url}/resolve`, { by: 'dave', comment: 'replaced the CT' });
    expect(resolved.json()).toMatchObject({ state: 'resolved', resolvedByName: 'dave', assignee: 'alice' });
    expect((await post(`${url}/assign`, { assignee: 'erin' })).statusCode).toBe(409);
    expect((await post(`${url}/comment`, { text: 'post-mortem filed' })).statusCode).toBe(200);

    const history = (await get(`${url}/history`)).json<{ items: Array<{ at: string; action: string }> }>().items;
    expect(history.map(({ at: _at, ...rest }) => rest)).toEqual([
      { action: 'opened', by: null, tokenId: null, comment: null },
      { action: 'assigned', by: 'bob', tokenId: 'console-w', comment: 'on it', assignee: 'alice' },
      { action: 'commented', by: 'bob', tokenId: 'console-w', comment: 'crew dispatched' },
      { action: 'acknowledged', by: 'carol', tokenId: 'console-w', comment: 'seen' },
      { action: 'commented', by: 'operator', tokenId: 'console-w', comment: 'still on it' },
      { action: 'escalated', by: null, tokenId: null, comment: null },
      { action: 'resolved', by: 'dave', tokenId: 'console-w', comment: 'replaced the CT' },
      { action: 'commented', by: 'operator', tokenId: 'console-w', comment: 'post-mortem filed' },
    ]);
    // Pipeline entries carry event time, operator entries wall time.
    expect(history[0]?.at).toBe(new Date(T0 + 4 * IV).toISOString());
    expect(history[5]?.at).toBe(new Date(T0 + 9 * IV).toISOString());
    expect(history.filter((_, i) => i !== 0 && i !== 5).every((e) => Date.parse(e.at) >= before && Date.parse(e.at) <= Date.now())).toBe(true);
    // One list next to the alert, in the alerts' hash slot.
    expect(await redis.llen(`mf:{alerts}:history:${a.id}`)).toBe(8);
  });

  it('power back: the pipeline resolves the outage and its meters (in their histories); nothing is left suppressed', async () => {
    const outage = await alerts.store.getByKey(`outage:${TA}`);
    if (!outage) throw new Error('no outage');
    const back = T0 + 95 * MIN;
    await send(OUTAGE_METERS.map((m) => event('powerRestored', m, back, { value: 0, expected: 0, score: 0, reason: 'powerRestored' })));
    await waitFor('outage resolved', async () => (await alerts.store.get(outage.id))?.state === 'resolved');
    await waitFor('gasps resolved', async () => (await alerts.store.list({ type: 'lastGasp', state: 'resolved' }, 10, undefined)).items.length === 6);

    expect(
      (await get(`/api/v1/alerts/${outage.id}/history`)).json().items.map((e: { at: string; action: string; by: string | null }) => [e.action, e.at, e.by]),
    ).toEqual([
      ['opened', new Date(T0).toISOString(), null],
      ['resolved', new Date(back).toISOString(), null],
    ]);
    const gasp = await alerts.store.getByKey('lastGasp:MA-1');
    expect((await get(`/api/v1/alerts/${gasp?.id}/history`)).json().items.map((e: { action: string }) => e.action)).toEqual(['opened', 'resolved']);
    // Resolved rows: the outage shows, its meters' alerts only when asked for.
    expect(await keys(`/api/v1/alerts?state=resolved&feeder=F-A`)).toEqual([`outage:${TA}`]);
    expect((await keys('/api/v1/alerts?state=resolved&feeder=F-A&suppressed=include')).length).toBe(7);
    await alerts.sweepNow();
    expect(await gauge()).toEqual({ false: 2, true: 0 });
  });

  it('the new routes are in the OpenAPI document', async () => {
    const docs = await app.inject({ method: 'GET', url: '/docs/json' });
    expect(Object.keys(docs.json().paths)).toEqual(
      expect.arrayContaining(['/api/v1/alerts/{id}/assign', '/api/v1/alerts/{id}/comment', '/api/v1/alerts/{id}/history']),
    );
  });
});
