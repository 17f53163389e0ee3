import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { Compile } from 'typebox/compile';
import { buildApp, type ApiApp } from '../../src/api/app.js';
import { BillingCloser } from '../../src/billing/closer.js';
import { influxBillingSource } from '../../src/billing/source.js';
import { redisBillingState } from '../../src/billing/state.js';
import { parseCsv } from '../../src/shared/csv.js';
import type { BillingRead } from '../../src/contracts/billing.js';
import { BillingConfig } from '../../src/contracts/config-billing.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import { TariffsConfigSchema } from '../../src/contracts/config-tariffs.js';
import { CustomerRecord } from '../../src/contracts/registry.js';
import { daysBetween } from '../../src/domain/local-time.js';
import { compileTariffs, tariffFor } from '../../src/domain/tariffs.js';
import { loadConfig, loadSection } from '../../src/shared/config.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { createLogger } from '../../src/shared/logger.js';
import { createMetrics } from '../../src/shared/metrics.js';
import { closeRedis, createRedis } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { startInflux, startRedis, uniquePrefix, type LocalService } from '../helpers/services.js';
import { expectedRead, intervalLines, ledger, readingLines, readsOf, type FixtureInterval, type FixtureMeter } from './billing-fixture.js';

const checkCustomer = Compile(CustomerRecord);
const tariffs = compileTariffs(loadSection('tariffs', TariffsConfigSchema, {}), 'UTC');
const cn = tariffFor(tariffs, 'cn-tou');
const us = tariffFor(tariffs, 'us-tou');
const flat = tariffFor(tariffs, 'default');
const FROM = Date.parse('2026-02-27T00:00:00Z');
const TO = Date.parse('2026-04-02T00:00:00Z');

const meters: FixtureMeter[] = [
  { meterId: 'A-1', customerId: 'CUST-1', tariff: cn, intervalMinutes: 15, startRegisterWh: 10 },
  { meterId: 'A-2', customerId: 'CUST-1', tariff: cn, intervalMinutes: 60, startRegisterWh: 20 },
  { meterId: 'B-1', customerId: 'CUST, "two"', tariff: us, intervalMinutes: 15, startRegisterWh: 30 },
  {
    meterId: 'B-2',
    customerId: 'CUST-3',
    tariff: us,
    intervalMinutes: 30,
    startRegisterWh: 40,
    estimated: new Set([
      200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200, 1300, 1400, 1500, 1550, 1560, 1570, 1580, 1590, 1591, 1592, 1593, 1594, 1595, 1596, 1597, 1460,
      1470, 1480, 1490, 1450,
    ]),
  },
  { meterId: 'C-1', customerId: 'CUST-4', tariff: flat, intervalMinutes: 60, startRegisterWh: 50 },
];
const TOKEN = 'billing-reader-token';
const OTHER = 'alerts-writer-token';

describe('billing API', () => {
  let redisSrv: LocalService;
  let influxSrv: LocalService;
  let influx: Influx;
  let redis: Redis;
  let app: ApiApp;
  const truth = new Map<string, FixtureInterval[]>();
  const log = createLogger({ level: 'silent' });
  const get = (url: string, headers: Record<string, string> = {}) =>
    app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${TOKEN}`, ...headers } });

  beforeAll(async () => {
    [redisSrv, influxSrv] = await Promise.all([startRedis(), startInflux()]);
    const config = loadConfig({
      REDIS_URL: redisSrv.url,
      INFLUX_URL: influxSrv.url,
      INFLUX_API: 'v1',
      INFLUX_BUCKET: uniquePrefix('api'),
      API_TOKENS: JSON.stringify({ [TOKEN]: ['billing:read'], [OTHER]: ['alerts:write'] }),
      MQTT_URL: 'mqtt://127.0.0.1:1', // remote-read is not exercised here
    });
    influx = await createInflux(config.influx, log);
    await influx.ensureDatabase();
    redis = createRedis(config.redis.url, 'test');
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    const records = meters.map((m): unknown => ({
      meterId: m.meterId,
      customerId: m.customerId,
      class: 'commercial',
      tariff: m.tariff.name,
      contractKw: 50,
      feederId: 'F1',
      transformerId: 'T1',
      hasPv: false,
      intervalMinutes: m.intervalMinutes,
    }));
    await registry.upsertMeters(records.filter((r) => checkCustomer.Check(r)));
    const writer = influx.writer({ batchSize: 20_000 });
    for (const m of meters) {
      const ivs = ledger(m, FROM, TO);
      truth.set(m.meterId, ivs);
      writer.write(intervalLines(m, ivs));
      writer.write(readingLines(m, ivs));
    }
    await writer.flush();

    // Close March directly (the role's queue and watermark are covered by billing-close.test.ts).
    const closer = new BillingCloser({
      source: influxBillingSource(influx),
      writer,
      state: redisBillingState(redis),
      meters: { allMeterIds: async () => (await registry.allMeters()).map((m) => m.meterId), getMeters: (ids) => registry.getMeters(ids) },
      tariffs,
      cfg: loadSection('billing', BillingConfig, {}),
      log,
      now: () => Date.now(),
      enqueueCloseDay: async () => {},
      enqueueClosePeriod: async () => {},
    });
    for (const timezone of ['Asia/Shanghai', 'America/Los_Angeles', 'UTC']) {
      for (const day of daysBetween('2026-03-01', '2026-04-01')) await closer.closeDay({ timezone, day });
      await closer.closePeriod({ timezone, period: '2026-03' });
    }
    app = await buildApp({ config, log, metrics: createMetrics(), redis, influx, registry }, { docs: false });
  }, 180_000);

  afterAll(async () => {
    await app?.close();
    await influx?.close();
    if (redis) await closeRedis(redis);
    await Promise.all([redisSrv?.destroy(), influxSrv?.destroy()]);
  });

  function expectLedger(item: BillingRead | undefined, m: FixtureMeter, fromDay: string, toDay: string): void {
    if (item === undefined) throw new Error(`no read for ${m.meterId}`);
    const want = expectedRead(m, truth.get(m.meterId) ?? [], fromDay, toDay);
    expect({
      meter: item.meterId,
      start: item.startRegisterWh,
      end: item.endRegisterWh,
      total: item.totalWh,
      bands: item.bands,
      est: item.estimatedIntervals,
    }).toEqual({
      meter: m.meterId,
      start: want.startRegisterWh,
      end: want.endRegisterWh,
      total: want.totalWh,
      bands: want.bands,
      est: want.estimatedIntervals,
    });
    expect(item.totalWh).toBe((item.endRegisterWh ?? NaN) - (item.startRegisterWh ?? NaN));
    expect(item.maxDemandW).toBe(want.maxDemandW);
    expect(item.customerId).toBe(m.customerId);
  }

  it('needs a token with billing:read', async () => {
    expect((await app.inject({ method: 'GET', url: '/api/v1/billing/reads?from=2026-03-01&to=2026-04-01' })).statusCode).toBe(401);
    expect((await get('/api/v1/billing/reads?from=2026-03-01&to=2026-04-01', { authorization: `Bearer ${OTHER}` })).statusCode).toBe(403);
  });

  it('serves March reads that equal the ledger, with local boundaries and quality', async () => {
    const res = await get('/api/v1/billing/reads?from=2026-03-01&to=2026-04-01');
    expect(res.statusCode).toBe(200);
    const body = readsOf(res);
    expect(body.items.map((i) => i.meterId)).toEqual(['A-1', 'A-2', 'B-1', 'B-2', 'C-1']);
    expect(body.nextCursor).toBeNull();
    for (const m of meters)
      expectLedger(
        body.items.find((i) => i.meterId === m.meterId),
        m,
        '2026-03-01',
        '2026-04-01',
      );
    const a1 = body.items[0];
    expect([a1?.from, a1?.to, a1?.timezone, a1?.tariff, a1?.completeness, a1?.quality]).toEqual([
      '2026-03-01T00:00:00+08:00',
      '2026-04-01T00:00:00+08:00',
      'Asia/Shanghai',
      'cn-tou',
      100,
      'actual',
    ]);
    const b1 = body.items[2];
    expect([b1?.from, b1?.to, b1?.intervals]).toEqual(['2026-03-01T00:00:00-08:00', '2026-04-01T00:00:00-07:00', 743 * 4]);
    // 31 estimated half-hours of 1486 in March (2.09 %) → estimated.
    expect([body.items[3]?.estimatedIntervals, body.items[3]?.quality]).toEqual([31, 'estimated']);
  });

  it('serves any day range, e.g. across the Los Angeles DST change', async () => {
    const body = readsOf(await get('/api/v1/billing/reads?from=2026-03-05&to=2026-03-09&meterId=B-1'));
    expect(body.items).toHaveLength(1);
    const b1 = meters[2];
    if (b1 === undefined) throw new Error('fixture');
    expectLedger(body.items[0], b1, '2026-03-05', '2026-03-09');
    expect(body.items[0]?.intervals).toBe((4 * 24 - 1) * 4);
    // A range reaching past the closed days is reported, but incomplete.
    const partial = readsOf(await get('/api/v1/billing/reads?from=2026-03-30&to=2026-04-03&meterId=B-1'));
    expect([partial.items[0]?.quality, partial.items[0]?.endRegisterWh, partial.items[0]?.completeness]).toEqual(['incomplete', null, 50]);
  });

  it('pages with a cursor and filters by customer', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/api/v1/billing/reads?from=2026-03-01&to=2026-04-01&limit=2${cursor === null ? '' : `&cursor=${cursor}`}`;
      const body = readsOf(await get(url));
      seen.push(...body.items.map((i) => i.meterId));
      cursor = body.nextCursor;
      pages++;
    } while (cursor !== null);
    expect(seen).toEqual(['A-1', 'A-2', 'B-1', 'B-2', 'C-1']);
    expect(pages).toBe(3);
    const byCustomer = readsOf(await get('/api/v1/billing/reads?from=2026-03-01&to=2026-04-01&customerId=CUST-1'));
    expect(byCustomer.items.map((i) => i.meterId)).toEqual(['A-1', 'A-2']);
  });

  it('CSV has one row per meter with band columns and agrees with JSON', async () => {
    const json = readsOf(await get('/api/v1/billing/reads?from=2026-03-01&to=2026-04-01'));
    const res = await get('/api/v1/billing/reads?from=2026-03-01&to=2026-04-01', { accept: 'text/csv' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/csv/);
    const [header, ...data] = parseCsv(res.body);
    if (header === undefined) throw new Error('empty CSV');
    expect(header).toEqual([
      'meterId',
      'customerId',
      'tariff',
      'timezone',
      'from',
      'to',
      'startRegisterWh',
      'startInterpolated',
      'endRegisterWh',
      'endInterpolated',
      'totalWh',
      'exportWh',
      ...tariffs.allBands.map((b) => `band_${b}_wh`),
      'maxDemandW',
      'maxDemandAt',
      'intervals',
      'estimatedIntervals',
      'completeness',
      'quality',
    ]);
    expect(data).toHaveLength(json.items.length);
    data.forEach((row, i) => {
      const item = json.items[i];
      if (item === undefined) throw new Error('row without item');
      const cell = (name: string): string => row[header.indexOf(name)] ?? 'missing';
      for (const k of ['meterId', 'customerId', 'tariff', 'timezone', 'from', 'to', 'maxDemandAt', 'quality'] as const) expect(cell(k)).toBe(String(item[k]));
      for (const k of ['startRegisterWh', 'endRegisterWh', 'totalWh', 'exportWh', 'maxDemandW', 'intervals', 'estimatedIntervals', 'completeness'] as const)
        expect(Number(cell(k))).toBe(item[k]);
      for (const b of tariffs.allBands) expect(cell(`band_${b}_wh`)).toBe(item.bands[b] === undefined ? '' : String(item.bands[b]));
    });
    expect(data[2]?.[1]).toBe('CUST, "two"');
    const paged = await get('/api/v1/billing/reads?from=2026-03-01&to=2026-04-01&limit=2', { accept: 'text/csv' });
    expect(parseCsv(paged.body)).toHaveLength(3);
    expect(typeof paged.headers['x-next-cursor']).toBe('string');
  });

  it('serves closed periods as stored, and 404 for open ones', async () => {
    const res = await get('/api/v1/billing/periods/2026-03/reads');
    expect(res.statusCode).toBe(200);
    const period = readsOf(res);
    const range = readsOf(await get('/api/v1/billing/reads?from=2026-03-01&to=2026-04-01'));
    expect(period.items).toEqual(range.items);
    const csv = await get('/api/v1/billing/periods/2026-03/reads?customerId=CUST-1', { accept: 'text/csv' });
    expect(parseCsv(csv.body).map((r) => r[0])).toEqual(['meterId', 'A-1', 'A-2']);
    const open = await get('/api/v1/billing/periods/2026-04/reads');
    expect([open.statusCode, open.json().message]).toEqual([404, 'period 2026-04 is not closed']);
  });

  it.each([
    ['/api/v1/billing/reads?from=2026-02-30&to=2026-04-01', 'querystring.from'],
    ['/api/v1/billing/reads?from=March&to=2026-04-01', 'querystring.from'],
    ['/api/v1/billing/reads?from=2026-03-01', 'querystring.to'],
    ['/api/v1/billing/reads?from=2026-04-01&to=2026-03-01', 'querystring.to'],
    ['/api/v1/billing/reads?from=2020-01-01&to=2026-03-01', 'querystring.to'],
    ['/api/v1/billing/reads?from=2026-03-01&to=2026-04-01&limit=0', 'querystring.limit'],
    ['/api/v1/billing/reads?from=2026-03-01&to=2026-04-01&limit=5000', 'querystring.limit'],
    ['/api/v1/billing/reads?from=2026-03-01&to=2026-04-01&cursor=bogus', 'querystring.cursor'],
    ['/api/v1/billing/reads?from=2026-03-01&to=2026-04-01&meterId=bad%20id', 'querystring.meterId'],
    ['/api/v1/billing/periods/2026-13/reads', 'params.period'],
  ])('400 naming the field: %s', async (url, field) => {
    const res = await get(url);
    expect(res.statusCode).toBe(400);
    expect(res.json().field).toBe(field);
  });

  it('503 and no partial totals when InfluxDB is down', async () => {
    await influxSrv.stop();
    try {
      const res = await get('/api/v1/billing/reads?from=2026-03-01&to=2026-04-01');
      expect(res.statusCode).toBe(503);
      expect(res.json()).toEqual({ statusCode: 503, error: 'Service Unavailable', message: 'a backing service is unavailable, retry later' });
      const csv = await get('/api/v1/billing/periods/2026-03/reads', { accept: 'text/csv' });
      expect(csv.statusCode).toBe(503);
    } finally {
      await influxSrv.restart();
    }
    expect((await get('/api/v1/billing/reads?from=2026-03-01&to=2026-04-01')).statusCode).toBe(200);
  });
});
