import type { Redis } from 'ioredis';
import { Compile } from 'typebox/compile';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type ApiApp } from '../../src/api/app.js';
import { startBilling, type BillingHandle } from '../../src/billing/main.js';
import { BillingConfig } from '../../src/contracts/config-billing.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import { TariffsConfigSchema } from '../../src/contracts/config-tariffs.js';
import { CustomerProfile, WatchlistResponse } from '../../src/contracts/insights.js';
import { CustomerRecord } from '../../src/contracts/registry.js';
import { compileTariffs, tariffFor } from '../../src/domain/tariffs.js';
import { billingKeys, recomputeJob } from '../../src/shared/billing-store.js';
import { profileLine, readProfiles } from '../../src/shared/profile-store.js';
import { loadConfig, loadSection } from '../../src/shared/config.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { createLogger } from '../../src/shared/logger.js';
import { createMetrics } from '../../src/shared/metrics.js';
import { parseCsv } from '../../src/shared/csv.js';
import { closeRedis, createRedis, keys } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { startInflux, startRedis, uniquePrefix, type LocalService } from '../helpers/services.js';
import { expectedRead, intervalLines, ledger, readingLines, type FixtureInterval, type FixtureMeter } from './billing-fixture.js';

/**
 * Customer profiles through the billing role's `close-month` job and the API, against real Redis and InfluxDB:
 * interval fixtures for Feb 27 – Apr 2 2026 in three zones, the role closing days and months from the watermark,
 * then the routes. Energy is checked against the fixture's ledger to the Wh.
 */
const INSIGHTS = 'profiles-insights-token';
const BILLING = 'profiles-billing-token';
const checkCustomer = Compile(CustomerRecord);
const checkProfile = Compile(CustomerProfile);
const checkWatchlist = Compile(WatchlistResponse);
const tariffsCfg = loadSection('tariffs', TariffsConfigSchema, {});
const tariffs = compileTariffs(tariffsCfg, 'UTC');
const cn = tariffFor(tariffs, 'cn-tou');
const us = tariffFor(tariffs, 'us-tou');
const flat = tariffFor(tariffs, 'default');
const FROM = Date.parse('2026-02-27T00:00:00Z');
const TO = Date.parse('2026-04-02T00:00:00Z');
/** The exchange: the old meter's last interval ends here, the new one's first starts. */
const SWAP = Date.parse('2026-03-16T12:00:00Z');
const range = (n: number, step: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i * step);

interface Fixture extends FixtureMeter {
  cls: CustomerRecord['class'];
  from?: number;
  to?: number;
}
const fixtures: Fixture[] = [
  { meterId: 'CN-1', customerId: 'C-CN-1', cls: 'commercial', tariff: cn, intervalMinutes: 15, startRegisterWh: 1_000_000 },
  // Four quarter-hours of 2026-03-10 (Shanghai) arrive late: the March profile is incomplete until the recompute.
  {
    meterId: 'CN-GAP',
    customerId: 'C-CN-GAP',
    cls: 'commercial',
    tariff: cn,
    intervalMinutes: 15,
    startRegisterWh: 42,
    missing: new Set(range(4, 1, (Date.parse('2026-03-10T02:00:00Z') - FROM) / 900_000)),
  },
  { meterId: 'US-1', customerId: 'C-US-1', cls: 'residential', tariff: us, intervalMinutes: 30, startRegisterWh: 7 },
  // One customer, two meters: the old one until the 16th at noon, the new one (starting at 0 Wh) after.
  { meterId: 'X-OLD', customerId: 'C-X', cls: 'residential', tariff: flat, intervalMinutes: 60, startRegisterWh: 5_000_000, to: SWAP },
  { meterId: 'X-NEW', customerId: 'C-X', cls: 'residential', tariff: flat, intervalMinutes: 15, startRegisterWh: 0, from: SWAP },
  ...['U-1', 'U-2', 'U-3'].map(
    (id, i): Fixture => ({ meterId: id, customerId: `C-${id}`, cls: 'residential', tariff: flat, intervalMinutes: 60, startRegisterWh: 1000 * i }),
  ),
];

describe('customer profiles: close-month job and API', () => {
  let redisSrv: LocalService;
  let influxSrv: LocalService;
  let influx: Influx;
  let redis: Redis;
  let billing: BillingHandle;
  let app: ApiApp;
  const truth = new Map<string, FixtureInterval[]>();
  const log = createLogger({ level: 'silent' });
  const get = (url: string, token = INSIGHTS) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });

  beforeAll(async () => {
    [redisSrv, influxSrv] = await Promise.all([startRedis(), startInflux()]);
    const config = loadConfig({
      REDIS_URL: redisSrv.url,
      INFLUX_URL: influxSrv.url,
      INFLUX_API: 'v1',
      INFLUX_BUCKET: uniquePrefix('profiles'),
      API_TOKENS: JSON.stringify({ [INSIGHTS]: ['insights:read'], [BILLING]: ['billing:read'] }),
      MQTT_URL: 'mqtt://127.0.0.1:1',
    });
    influx = await createInflux(config.influx, log);
    await influx.ensureDatabase();
    redis = createRedis(config.redis.url, 'test');
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    const records = fixtures.map((m): unknown => ({
      meterId: m.meterId,
      customerId: m.customerId,
      class: m.cls,
      tariff: m.tariff.name,
      contractKw: 10,
      feederId: 'F1',
      transformerId: 'T1',
      hasPv: false,
      intervalMinutes: m.intervalMinutes,
    }));
    await registry.upsertMeters(records.filter((r) => checkCustomer.Check(r)));
    expect(await registry.allMeters()).toHaveLength(fixtures.length);
    const writer = influx.writer({ batchSize: 20_000 });
    for (const m of fixtures) {
      const ivs = ledger(m, m.from ?? FROM, m.to ?? TO);
      truth.set(m.meterId, ivs);
      writer.write(intervalLines(m, ivs));
      writer.write(readingLines(m, ivs));
    }
    await writer.flush();
    await redis.hset(keys.watermark, { 0: String(Date.parse('2026-04-01T12:00:00Z')) });
    const cfg = structuredClone(loadSection('billing', BillingConfig, {}));
    cfg.close.everyMs = 300;
    billing = await startBilling({ config, log, metrics: createMetrics() }, { billing: cfg, tariffs: tariffsCfg, prefix: uniquePrefix('pq') });
    app = await buildApp({ config, log, metrics: createMetrics(), redis, influx, registry }, { docs: true });
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await billing?.close();
    await influx?.close();
    if (redis) await closeRedis(redis);
    await Promise.all([redisSrv?.destroy(), influxSrv?.destroy()]);
  });

  async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await probe();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  const profiled = (zone: string, month: string) => async () => {
    const v = await redis.hget(billingKeys.profiledMonths, `${zone}|${month}`);
    return v !== null && /^\d+$/.test(v) ? Number(v) : undefined;
  };

  async function profileOf(customerId: string, month = '2026-03'): Promise<CustomerProfile> {
    const res = await get(`/api/v1/customers/${customerId}/profile?month=${month}`);
    const body: unknown = res.json();
    if (res.statusCode !== 200 || !checkProfile.Check(body)) throw new Error(`no profile (${res.statusCode}): ${res.body.slice(0, 300)}`);
    return body;
  }

  it('profiles February and March in every zone once their last days close', async () => {
    for (const zone of ['Asia/Shanghai', 'America/Los_Angeles', 'UTC']) {
      await waitFor(`${zone} 2026-03 profiled`, profiled(zone, '2026-03'));
      expect(await profiled(zone, '2026-02')()).toBeTypeOf('number');
    }
  }, 120_000);

  it("every customer's energy equals the ledger to the Wh; bands, demand and quality follow", async () => {
    for (const m of fixtures.filter((f) => !f.customerId.startsWith('C-X') && f.meterId !== 'CN-GAP')) {
      const p = await profileOf(m.customerId);
      const want = expectedRead(m, truth.get(m.meterId) ?? [], '2026-03-01', '2026-04-01');
      expect({ c: m.customerId, energy: p.energyWh, quality: p.quality }).toEqual({ c: m.customerId, energy: want.totalWh, quality: 'actual' });
      expect(p.energyWh).toBe(want.endRegisterWh - want.startRegisterWh);
      expect(Object.fromEntries(p.bands.map((b) => [b.band, b.wh]))).toEqual(want.bands);
      expect(p.maxDemandW).toBe(want.maxDemandW);
      expect(p.meters.map((x) => [x.meterId, x.startRegisterWh, x.endRegisterWh])).toEqual([[m.meterId, want.startRegisterWh, want.endRegisterWh]]);
      expect(p.timezone).toBe(m.tariff.timezone);
      // February started on the 27th: incomplete, so no change against it.
      expect([p.previousMonthWh === null, p.changeVsPreviousMonth, p.lastYearWh, p.changeVsLastYear]).toEqual([false, null, null, null]);
    }
    const us1 = await profileOf('C-US-1');
    // Los Angeles' March has the 23-hour spring-forward day.
    expect([us1.hours, us1.intervals, us1.from, us1.to]).toEqual([743, 743 * 2, '2026-03-01T00:00:00-08:00', '2026-04-01T00:00:00-07:00']);
    expect(us1.tariffAdvice).toMatchObject({ currency: 'USD', currentTariff: 'us-tou', bestTariff: 'us-tou', savingMinor: 0 });
    const cn1 = await profileOf('C-CN-1');
    expect(cn1.tariffAdvice).toMatchObject({ currency: 'CNY', currentTariff: 'cn-tou' });
    expect(cn1.loadFactor).toBe(Math.round((cn1.energyWh / ((cn1.maxDemandW ?? 0) * 744)) * 10_000) / 10_000);
  });

  it('a meter exchange: energy is the sum of both meters, each its register delta', async () => {
    const p = await profileOf('C-X');
    const old = truth.get('X-OLD') ?? [];
    const neu = truth.get('X-NEW') ?? [];
    const march = Date.parse('2026-03-01T00:00:00Z');
    const oldStart = old.find((iv) => iv.start === march);
    const oldEnd = old[old.length - 1];
    const newEnd = neu.find((iv) => iv.end === Date.parse('2026-04-01T00:00:00Z'));
    if (oldStart === undefined || oldEnd === undefined || newEnd === undefined) throw new Error('fixture');
    const oldDelta = oldEnd.registerWh - (oldStart.registerWh - oldStart.wh);
    const newDelta = newEnd.registerWh - 0;
    expect(p.meters.map((m) => [m.meterId, m.energyWh, m.startRegisterWh, m.endRegisterWh])).toEqual([
      ['X-NEW', newDelta, null, newEnd.registerWh],
      ['X-OLD', oldDelta, oldStart.registerWh - oldStart.wh, null],
    ]);
    expect([p.energyWh, p.quality, p.completeness]).toEqual([oldDelta + newDelta, 'actual', 100]);
  });

  it('segments rank each class: residential has 5 customers, the largest is a key account only at 20 %', async () => {
    const res = await get('/api/v1/insights/profiles?month=2026-03&format=json');
    expect(res.statusCode).toBe(200);
    const items: CustomerProfile[] = res.json().items;
    expect(items.map((p) => p.customerId)).toEqual(['C-CN-1', 'C-CN-GAP', 'C-U-1', 'C-U-2', 'C-U-3', 'C-US-1', 'C-X']);
    // Ranked within a class and time zone: UTC residential are C-U-1..3 and C-X (4); Los Angeles has C-US-1 alone.
    // 5 % of 4 and of 1 is none, 25 % of 4 is one: the largest is `large`.
    const utc = items.filter((p) => p.timezone === 'UTC').sort((a, b) => a.classRank - b.classRank);
    expect(utc.map((p) => [p.classRank, p.classSize, p.segment])).toEqual([
      [1, 4, 'residential/large'],
      [2, 4, 'residential/standard'],
      [3, 4, 'residential/standard'],
      [4, 4, 'residential/standard'],
    ]);
  });

  it('pages through the customers: JSON and CSV pages of 3 add up to the whole list, in id order', async () => {
    const all: CustomerProfile[] = (await get('/api/v1/insights/profiles?month=2026-03&format=json')).json().items;
    expect(all.length).toBeGreaterThan(3);
    const seen: string[] = [];
    let cursor: string | null = '';
    while (cursor !== null) {
      const body: { items: CustomerProfile[]; nextCursor: string | null } = (
        await get(`/api/v1/insights/profiles?month=2026-03&format=json&limit=3${cursor ? `&cursor=${cursor}` : ''}`)
      ).json();
      expect(body.items.length).toBeLessThanOrEqual(3);
      seen.push(...body.items.map((p) => p.customerId));
      cursor = body.nextCursor;
    }
    expect(seen).toEqual(all.map((p) => p.customerId));
    expect(seen).toEqual([...seen].sort());
    const csv: string[] = [];
    let next: string | undefined = '';
    while (next !== undefined) {
      const res = await get(`/api/v1/insights/profiles?month=2026-03&limit=3${next ? `&cursor=${next}` : ''}`);
      const [header = [], ...rows] = parseCsv(res.body);
      csv.push(...rows.map((r) => r[header.indexOf('customerId')] ?? ''));
      const h = res.headers['x-next-cursor'];
      next = typeof h === 'string' ? h : undefined;
    }
    expect(csv).toEqual(seen);
    expect((await get('/api/v1/insights/profiles?month=2026-03&cursor=not-ours')).json().field).toBe('querystring.cursor');
  });

  it('CSV: a header and one row per customer, agreeing with JSON', async () => {
    const json: CustomerProfile[] = (await get('/api/v1/insights/profiles?month=2026-03&format=json')).json().items;
    const res = await get('/api/v1/insights/profiles?month=2026-03');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
    const [header = [], ...rows] = parseCsv(res.body);
    expect(rows).toHaveLength(json.length);
    expect(header.slice(0, 4)).toEqual(['customerId', 'class', 'segment', 'tier']);
    rows.forEach((row, i) => {
      const p = json[i];
      expect(row[header.indexOf('customerId')]).toBe(p?.customerId);
      expect(Number(row[header.indexOf('energyWh')])).toBe(p?.energyWh);
      expect(row[header.indexOf('quality')]).toBe(p?.quality);
    });
  });

  it('late data for a profiled month: the recompute profiles it again', async () => {
    const before = await profileOf('C-CN-GAP');
    expect(before.quality).toBe('incomplete');
    const m = fixtures.find((f) => f.meterId === 'CN-GAP');
    if (m === undefined) throw new Error('fixture');
    const ivs = truth.get('CN-GAP') ?? [];
    const late = influx.writer();
    late.write(
      intervalLines(
        m,
        ivs.filter((iv) => iv.missing),
        true,
      ),
    );
    await late.flush();
    await billing.queue.addBulk([recomputeJob({ meterId: 'CN-GAP', day: '2026-03-10', entryId: '1-0' }, 3600)]);
    const after = await waitFor('CN-GAP re-profiled', async () => {
      const p = await profileOf('C-CN-GAP');
      return p.quality === 'actual' ? p : undefined;
    });
    const want = expectedRead(m, ivs, '2026-03-01', '2026-04-01');
    expect([after.energyWh, after.completeness]).toEqual([want.totalWh, 100]);
    expect(after.energyWh - before.energyWh).toBe(ivs.filter((iv) => iv.missing).reduce((s, iv) => s + iv.wh, 0));
  }, 60_000);

  it('the tick re-schedules a month close that a crash left undone', async () => {
    await redis.hset(billingKeys.profiledMonths, 'UTC|2026-03', 'closing');
    const at = await waitFor('UTC 2026-03 profiled again', profiled('UTC', '2026-03'));
    expect(at).toBeGreaterThan(0);
  }, 60_000);

  it('a month late data marked dirty is profiled again by the tick', async () => {
    const zone = 'Asia/Shanghai';
    const first = await waitFor(`${zone} 2026-03 profiled`, profiled(zone, '2026-03'));
    // As a recompute leaves it when it rewrote a day while (or after) the month was profiled.
    await redis.hset(billingKeys.profiledMonths, `${zone}|2026-03`, 'dirty');
    const again = await waitFor('profiled again', async () => {
      const at = await profiled(zone, '2026-03')();
      return at !== undefined && at > first ? at : undefined;
    });
    expect(again).toBeGreaterThan(first);
  }, 60_000);

  it('a rewrite replaces every field: nulls stay null, bands of an earlier tariff are not read back', async () => {
    const first = (await readProfiles(influx, ['2026-03'], 'C-CN-1'))[0];
    if (first === undefined) throw new Error('no profile');
    const month = '2025-01';
    // Local midnight starting January 2025 in Shanghai: the point's time, as the billing role writes it.
    const at = { month, fromMs: Date.parse('2024-12-31T16:00:00Z'), toMs: Date.parse('2025-01-31T16:00:00Z') };
    const writer = influx.writer();
    // First as a cn-tou customer with every value known, then again on the flat tariff with the nullable ones unknown.
    writer.write([profileLine({ ...first, ...at, changeVsPreviousMonth: 0.5, lastYearWh: 123, changeVsLastYear: -0.25 }, 1)]);
    await writer.flush();
    const flatBands = [{ band: 'flat', wh: first.energyWh, share: 1 }];
    const nulls = { maxDemandW: null, maxDemandAt: null, loadFactor: null, weekdayWeekendRatio: null, changeVsPreviousMonth: null, lastYearWh: null };
    writer.write([profileLine({ ...first, ...at, tariff: 'default', bands: flatBands, ...nulls, changeVsLastYear: null, tariffAdvice: null }, 2)]);
    await writer.flush();
    const [back] = await readProfiles(influx, [month], 'C-CN-1');
    expect(back).toEqual({ ...first, ...at, tariff: 'default', bands: flatBands, ...nulls, changeVsLastYear: null, tariffAdvice: null, computedAt: 2 });
  });

  it('watch-list: nobody fell over the months there are', async () => {
    const res = await get('/api/v1/insights/watchlist?month=2026-03');
    const body: unknown = res.json();
    expect(res.statusCode).toBe(200);
    if (!checkWatchlist.Check(body)) throw new Error(res.body);
    expect(body).toEqual({ month: '2026-03', dropShare: 0.3, items: [], explained: [] });
  });

  it('watch-list from stored profiles: a fall with the rest of the class flat is listed', async () => {
    const template = (await readProfiles(influx, ['2026-03'], 'C-U-1'))[0];
    if (template === undefined) throw new Error('no profile');
    const months = ['2025-07', '2025-08', '2025-09', '2025-10', '2025-11', '2025-12'];
    const energies: Record<string, number[]> = {
      'W-1': [9000, 9000, 9000, 8000, 3000, 3000],
      'W-2': [5000, 5000, 5000, 5000, 5000, 5000],
      'W-3': [7000, 7000, 7000, 7000, 7000, 7000],
    };
    const writer = influx.writer();
    for (const [customerId, list] of Object.entries(energies)) {
      const meters = template.meters.map((m) => ({ ...m, meterId: `${customerId}-M` }));
      writer.write(
        months.map((month, i) =>
          profileLine({ ...template, customerId, month, fromMs: Date.parse(`${month}-01T00:00:00Z`), energyWh: list[i] ?? 0, meters }, 1),
        ),
      );
    }
    await writer.flush();
    const res = await get('/api/v1/insights/watchlist?month=2025-12');
    const body: unknown = res.json();
    if (!checkWatchlist.Check(body)) throw new Error(res.body);
    // Baseline 9000, December 3000: a drop of 2/3; the rest of the class (W-2, W-3) did not move. 9000 → 8000 → 3000:
    // the 5000 step is five sixths of the 6000 fall.
    expect(body.items.map((e) => [e.customerId, e.baselineWh, e.latestWh, e.dropShare, e.classChange, e.dropNetOfClass, e.kind, e.reasons])).toEqual([
      ['W-1', 9000, 3000, 0.6667, 0, 0.6667, 'sudden', []],
    ]);
    expect(body.explained).toEqual([]);
  });

  it('404 names the reason; 400 names the field; insights:read is needed', async () => {
    expect((await get('/api/v1/customers/NOBODY/profile?month=2026-03')).json()).toEqual({
      statusCode: 404,
      error: 'Not Found',
      message: 'customer NOBODY is not in the registry',
    });
    expect((await get('/api/v1/customers/C-U-1/profile?month=2026-05')).json().message).toBe(
      'customer C-U-1 has no profile for 2026-05 (the month is not closed yet)',
    );
    for (const url of [
      '/api/v1/customers/C-U-1/profile?month=2026-13',
      // Months InfluxDB cannot hold (its times end in 2262) or before any meter.
      '/api/v1/customers/C-U-1/profile?month=9999-12',
      '/api/v1/insights/watchlist?month=0000-01',
      '/api/v1/customers/C-U-1/profile',
      '/api/v1/insights/profiles?month=26-03',
      '/api/v1/insights/watchlist?month=2026-3',
    ]) {
      const res = await get(url);
      expect([url, res.statusCode, res.json().field]).toEqual([url, 400, 'querystring.month']);
    }
    expect((await get('/api/v1/insights/profiles?month=2026-03&format=xml')).json().field).toBe('querystring.format');
    expect((await get('/api/v1/insights/watchlist?month=2026-03', BILLING)).statusCode).toBe(403);
    const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
    for (const path of ['/api/v1/customers/{customerId}/profile', '/api/v1/insights/profiles', '/api/v1/insights/watchlist']) {
      expect(Object.keys(doc.paths[path] ?? {})).toEqual(['get']);
    }
  });
});
