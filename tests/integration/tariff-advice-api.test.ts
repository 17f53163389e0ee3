import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type ApiApp } from '../../src/api/app.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import type { CustomerRecord } from '../../src/contracts/registry.js';
import { loadConfig, loadSection } from '../../src/shared/config.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { int, lp } from '../../src/shared/line-protocol.js';
import { createLogger } from '../../src/shared/logger.js';
import { createMetrics } from '../../src/shared/metrics.js';
import { closeRedis, createRedis } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { startInflux, startRedis, uniquePrefix, type LocalService } from '../helpers/services.js';

/**
 * GET /api/v1/customers/{customerId}/tariff-advice against real Redis and InfluxDB, with the shipped
 * config/tariffs.yaml (Spanish 2.0TD periods in Europe/Madrid: weekdays valle 00-08, llano 08-10, punta 10-14,
 * llano 14-18, punta 18-22, llano 22-24; weekends valle all day). The window is Fri 2026-03-27 to Mon 2026-03-30
 * (3 local days); Sunday 2026-03-29 is the spring-forward day, 23 hours long. Expected bills are worked out by hand.
 */
const INSIGHTS = 'insights-reader-token';
const BILLING = 'billing-reader-token';
const ADMIN = 'admin-token-000001';
const H = 3_600_000;
// Local midnight of Fri 2026-03-27 in Madrid (CET, UTC+1); DST starts Sun 2026-03-29 02:00 local (01:00 UTC).
const FRI = Date.parse('2026-03-26T23:00:00Z');
const SAT = Date.parse('2026-03-27T23:00:00Z');
const SUN = Date.parse('2026-03-28T23:00:00Z');
const MON = Date.parse('2026-03-29T22:00:00Z'); // 23 hours after SUN

const record = (meterId: string, customerId: string, cls: CustomerRecord['class'], tariff: string, intervalMinutes: 15 | 60): CustomerRecord => ({
  meterId,
  customerId,
  class: cls,
  tariff,
  contractKw: 10,
  feederId: 'F1',
  transformerId: 'T1',
  hasPv: false,
  intervalMinutes,
});

/** Interval points as the stream worker writes them: time = start, register at the end, demand = average W. */
function points(meterId: string, minutes: number, fromMs: number, toMs: number, whAt: (start: number) => number, estimatedAt = new Set<number>()): string[] {
  const dur = minutes * 60_000;
  const out: string[] = [];
  let reg = 1_000_000;
  for (let s = fromMs; s < toMs; s += dur) {
    const wh = whAt(s);
    reg += wh;
    out.push(
      lp(
        'interval',
        { meter: meterId, feeder: 'F1', transformer: 'T1', class: 'x', band: 'x' },
        { wh: int(wh), export_wh: int(0), demand_w: (wh * H) / dur, register_wh: int(reg), estimated: estimatedAt.has(s) },
        s,
      ),
    );
  }
  return out;
}

describe('tariff advice API', () => {
  let redisSrv: LocalService;
  let influxSrv: LocalService;
  let influx: Influx;
  let redis: Redis;
  let app: ApiApp;
  const log = createLogger({ level: 'silent' });
  const get = (url: string, token: string | null = INSIGHTS) =>
    app.inject({ method: 'GET', url, headers: token === null ? {} : { authorization: `Bearer ${token}` } });

  beforeAll(async () => {
    [redisSrv, influxSrv] = await Promise.all([startRedis(), startInflux()]);
    const config = loadConfig({
      REDIS_URL: redisSrv.url,
      INFLUX_URL: influxSrv.url,
      INFLUX_API: 'v1',
      INFLUX_BUCKET: uniquePrefix('advice'),
      API_TOKENS: JSON.stringify({ [INSIGHTS]: ['insights:read'], [BILLING]: ['billing:read'], [ADMIN]: ['admin'] }),
      MQTT_URL: 'mqtt://127.0.0.1:1', // remote-read is not exercised here
    });
    influx = await createInflux(config.influx, log);
    await influx.ensureDatabase();
    redis = createRedis(config.redis.url, 'test');
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    await registry.upsertMeters([
      record('R-1', 'CUST-R', 'residential', 'residential-tou', 60),
      // A meter exchange on Saturday at local noon: the old hourly meter, then a 15-minute one.
      record('C-OLD', 'CUST-C', 'commercial', 'commercial-tou', 60),
      record('C-NEW', 'CUST-C', 'commercial', 'commercial-tou', 15),
      record('I-1', 'CUST-I', 'industrial', 'industrial-tou', 60),
    ]);
    const exchange = SAT + 12 * H;
    const writer = influx.writer({ batchSize: 10_000 });
    // Outside the window on both sides too: they must not count.
    writer.write(points('R-1', 60, FRI - 6 * H, MON + 6 * H, (s) => (s < SAT ? 1000 : s < SUN ? 500 : 400)));
    writer.write(points('C-OLD', 60, FRI, exchange, () => 2000));
    writer.write(points('C-NEW', 15, exchange, MON, () => 250, new Set([exchange])));
    // One hour at twice the load: Friday 19:00 local (punta), 6000 W of demand.
    writer.write(points('I-1', 60, FRI, MON, (s) => (s === FRI + 19 * H ? 6000 : 3000)));
    await writer.flush();
    app = await buildApp({ config, log, metrics: createMetrics(), redis, influx, registry }, { docs: true });
  }, 180_000);

  afterAll(async () => {
    await app?.close();
    await influx?.close();
    if (redis) await closeRedis(redis);
    await Promise.all([redisSrv?.destroy(), influxSrv?.destroy()]);
  });

  const URL = (customer: string, q = 'from=2026-03-27&to=2026-03-30') => `/api/v1/customers/${encodeURIComponent(customer)}/tariff-advice?${q}`;
  const totals = (body: { options: { tariff: string; amount: string; amountMinor: number; saving: string | null }[] }) =>
    body.options.map((o) => [o.tariff, o.amount, o.amountMinor, o.saving]);

  it('residential: every band over a weekday, a Saturday and the 23-hour DST Sunday, to the cent', async () => {
    const res = await get(URL('CUST-R'));
    expect(res.statusCode).toBe(200);
    const body = res.json();
    // Fri 24 h × 1000 Wh: punta 8 h = 8000, llano 8 h = 8000, valle 8 h = 8000; Sat 24 × 500 = 12000 valle;
    // Sun 23 × 400 = 9200 valle (spring forward). Valle 29200, total 45200 Wh, 24 + 24 + 23 = 71 intervals.
    expect(body).toMatchObject({
      customerId: 'CUST-R',
      class: 'residential',
      meters: ['R-1'],
      timezone: 'Europe/Madrid',
      days: 3,
      currency: 'EUR',
      currentTariff: 'residential-tou',
      intervals: 71,
      estimatedIntervals: 0,
      totalWh: 45200,
      shiftShare: null,
    });
    // residential-tou: punta 8 × 0.24 = 1.92; llano 8 × 0.155 = 1.24; valle 29.2 × 0.095 = 2.774 → 2.77;
    //   standing 3 × 0.30 = 0.90; total 6.83.
    // default: 45.2 × 0.16 = 7.232 → 7.23; standing 3 × 0.25 = 0.75; total 7.98; saving 6.83 − 7.98 = −1.15.
    expect(totals(body)).toEqual([
      ['residential-tou', '6.83', 683, '0.00'],
      ['default', '7.98', 798, '-1.15'],
    ]);
    expect(body.current.bill.bands).toEqual([
      { band: 'punta', wh: 8000, pricePerKwh: '0.240000', amountMinor: 192, amount: '1.92' },
      { band: 'llano', wh: 8000, pricePerKwh: '0.155000', amountMinor: 124, amount: '1.24' },
      { band: 'valle', wh: 29200, pricePerKwh: '0.095000', amountMinor: 277, amount: '2.77' },
    ]);
    expect([body.current.bill.fixed, body.current.bill.total, body.current.eligible]).toEqual(['0.90', '6.83', true]);
    // cn-tou is for commercial and up; us-tou is residential but in USD; the other Spanish ones are for other classes.
    expect(body.excluded).toEqual([
      { tariff: 'cn-tou', reason: 'class' },
      { tariff: 'us-tou', reason: 'currency' },
      { tariff: 'commercial-tou', reason: 'class' },
      { tariff: 'industrial-tou', reason: 'class' },
    ]);
  });

  it('residential with shift=0.3: 30 % of punta priced at valle', async () => {
    const body = (await get(URL('CUST-R', 'from=2026-03-27&to=2026-03-30&shift=0.3'))).json();
    // Moved 0.3 × 8000 = 2400 Wh: punta 5.6 × 0.24 = 1.344 → 1.34; llano 1.24; valle 31.6 × 0.095 = 3.002 → 3.00;
    //   standing 0.90; total 6.48: 0.35 cheaper than 6.83. default has one band: nothing moves.
    expect(body.shiftShare).toBe(0.3);
    expect(body.options.map((o: { tariff: string; shift: unknown }) => [o.tariff, o.shift])).toEqual([
      [
        'residential-tou',
        {
          share: 0.3,
          fromBand: 'punta',
          toBand: 'valle',
          movedWh: 2400,
          totalMinor: 648,
          total: '6.48',
          savingMinor: 35,
          saving: '0.35',
          shiftSavingMinor: 35,
          shiftSaving: '0.35',
        },
      ],
      [
        'default',
        {
          share: 0.3,
          fromBand: 'flat',
          toBand: 'flat',
          movedWh: 0,
          totalMinor: 798,
          total: '7.98',
          savingMinor: -115,
          saving: '-1.15',
          shiftSavingMinor: 0,
          shiftSaving: '0.00',
        },
      ],
    ]);
  });

  it('commercial with a replaced meter: both meters summed into one hourly load', async () => {
    const body = (await get(URL('CUST-C'))).json();
    // C-OLD 2000 Wh/h until Sat 12:00 local, C-NEW 4 × 250 Wh/h after. Fri: punta, llano, valle 8 h × 2000 = 16000
    // each; Sat 12 × 2000 + 12 × 1000 = 36000 valle; Sun 23 × 1000 = 23000 valle. Valle 75000, total 107000 Wh.
    // 36 hourly intervals from C-OLD + 35 hours of C-NEW quarters = 71; the hour of the first (estimated) quarter: 1.
    expect(body).toMatchObject({
      meters: ['C-NEW', 'C-OLD'],
      class: 'commercial',
      currentTariff: 'commercial-tou',
      intervals: 71,
      estimatedIntervals: 1,
      totalWh: 107000,
    });
    expect(body.maxDemandW).toBe(2000);
    // commercial-tou: punta 16 × 0.225 = 3.60; llano 16 × 0.148 = 2.368 → 2.37; valle 75 × 0.092 = 6.90;
    //   standing 3 × 0.65 = 1.95; total 14.82.
    // default: 107 × 0.16 = 17.12; standing 0.75; total 17.87; saving 14.82 − 17.87 = −3.05.
    expect(totals(body)).toEqual([
      ['commercial-tou', '14.82', 1482, '0.00'],
      ['default', '17.87', 1787, '-3.05'],
    ]);
    expect(body.excluded).toEqual([
      { tariff: 'cn-tou', reason: 'currency' },
      { tariff: 'us-tou', reason: 'class' },
      { tariff: 'residential-tou', reason: 'class' },
      { tariff: 'industrial-tou', reason: 'class' },
    ]);
  });

  it('industrial with a demand charge and half-cent lines: the flat default is cheaper', async () => {
    const body = (await get(URL('CUST-I'), ADMIN)).json();
    // Fri: punta 7 × 3000 + 6000 = 27000, llano 24000, valle 24000; Sat 72000, Sun 23 × 3000 = 69000 valle.
    // Valle 165000, total 216000 Wh; max demand 6000 W.
    // industrial-tou: punta 27 × 0.185 = 4.995 → 5.00 (half up); llano 24 × 0.128 = 3.072 → 3.07;
    //   valle 165 × 0.085 = 14.025 → 14.03 (half up); standing 3 × 1.20 = 3.60; demand 6 kW × 4.50 = 27.00;
    //   total 5.00 + 3.07 + 14.03 + 3.60 + 27.00 = 52.70.
    // default: 216 × 0.16 = 34.56; standing 0.75; total 35.31; saving 52.70 − 35.31 = 17.39.
    expect(body).toMatchObject({ currentTariff: 'industrial-tou', totalWh: 216000, maxDemandW: 6000, intervals: 71 });
    expect(totals(body)).toEqual([
      ['default', '35.31', 3531, '17.39'],
      ['industrial-tou', '52.70', 5270, '0.00'],
    ]);
    expect(body.current.bill).toMatchObject({ energy: '22.10', fixed: '3.60', demand: '27.00', maxDemandW: 6000, demandCharge: '4.500000', total: '52.70' });
  });

  it('needs a token with insights:read (or admin)', async () => {
    expect((await get(URL('CUST-R'), null)).statusCode).toBe(401);
    expect((await get(URL('CUST-R'), 'not-a-known-token')).statusCode).toBe(401);
    expect((await get(URL('CUST-R'), BILLING)).statusCode).toBe(403);
    expect((await get(URL('CUST-R'), ADMIN)).statusCode).toBe(200);
  });

  it('404 names an unknown customer', async () => {
    const res = await get(URL('NOBODY'));
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ statusCode: 404, error: 'Not Found', message: 'customer NOBODY is not in the registry' });
  });

  it.each([
    ['from=2026-3-27&to=2026-03-30', 'querystring.from'],
    ['from=2026-02-30&to=2026-03-30', 'querystring.from'],
    ['to=2026-03-30', 'querystring.from'],
    ['from=2026-03-27&to=2026-13-01', 'querystring.to'],
    ['from=2026-03-27', 'querystring.to'],
    ['from=2026-03-30&to=2026-03-30', 'querystring.to'],
    ['from=2026-03-30&to=2026-03-27', 'querystring.to'],
    ['from=2025-01-01&to=2026-01-03', 'querystring.to'],
    ['from=2026-03-27&to=2026-03-30&shift=1.5', 'querystring.shift'],
    ['from=2026-03-27&to=2026-03-30&shift=-0.1', 'querystring.shift'],
    ['from=2026-03-27&to=2026-03-30&shift=abc', 'querystring.shift'],
    ['from=2026-03-27&to=2026-03-30&shift=1e999', 'querystring.shift'],
  ])('400 for %s names %s', async (q, field) => {
    const res = await get(URL('CUST-R', q));
    expect(res.statusCode).toBe(400);
    expect(res.json().field).toBe(field);
  });

  it('is in the OpenAPI document', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
    expect(Object.keys(doc.paths['/api/v1/customers/{customerId}/tariff-advice'] ?? {})).toEqual(['get']);
  });
});
