import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { BILLING_JOBS, DAILY_MEASUREMENT, PERIOD_MEASUREMENT } from '../../src/contracts/billing.js';
import { billingKeys, latestPerStart, recomputeJob, type StoredRead } from '../../src/shared/billing-store.js';
import { BillingConfig } from '../../src/contracts/config-billing.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import { TariffsConfigSchema } from '../../src/contracts/config-tariffs.js';
import { CustomerRecord } from '../../src/contracts/registry.js';
import { Compile } from 'typebox/compile';
import { dayWindow } from '../../src/domain/local-time.js';
import { compileTariffs, tariffFor } from '../../src/domain/tariffs.js';
import { startBilling, type BillingHandle } from '../../src/billing/main.js';
import { influxBillingSource } from '../../src/billing/source.js';
import { loadConfig, loadSection } from '../../src/shared/config.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { createLogger } from '../../src/shared/logger.js';
import { createMetrics } from '../../src/shared/metrics.js';
import { closeRedis, createRedis, keys } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { startInflux, startRedis, uniquePrefix, type LocalService } from '../helpers/services.js';
import { expectedRead, intervalLines, ledger, readingLines, type FixtureInterval, type FixtureMeter } from './billing-fixture.js';

const checkCustomer = Compile(CustomerRecord);
const tariffsCfg = loadSection('tariffs', TariffsConfigSchema, {});
const tariffs = compileTariffs(tariffsCfg, 'UTC');
const cn = tariffFor(tariffs, 'cn-tou');
const us = tariffFor(tariffs, 'us-tou');
const flat = tariffFor(tariffs, 'default');
const H = 3_600_000;
const FROM = Date.parse('2026-02-27T00:00:00Z');
const TO = Date.parse('2026-04-02T00:00:00Z');
const range = (n: number, step: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i * step);

/** Index of the interval starting at `iso` for a meter whose data starts at FROM. */
const idx = (iso: string, minutes: number): number => (Date.parse(iso) - FROM) / (minutes * 60_000);

const meters: FixtureMeter[] = [
  { meterId: 'CN-1', customerId: 'C-CN-1', tariff: cn, intervalMinutes: 15, startRegisterWh: 1_000_000 },
  // Raw reads only every 6 h and not at local midnight: boundary registers are interpolated.
  { meterId: 'CN-2', customerId: 'C-CN-2', tariff: cn, intervalMinutes: 60, startRegisterWh: 55, readsOnlyAt: new Set(range(200, 6 * H, FROM + 3 * H)) },
  // Four quarter-hours of 2026-03-10 (Shanghai) not delivered yet.
  {
    meterId: 'CN-GAP',
    customerId: 'C-CN-GAP',
    tariff: cn,
    intervalMinutes: 15,
    startRegisterWh: 42,
    missing: new Set(range(4, 1, idx('2026-03-10T02:00:00Z', 15))),
  },
  { meterId: 'US-1', customerId: 'C-US-1', tariff: us, intervalMinutes: 15, startRegisterWh: 7 },
  // 1 % estimated → actual; 3 % → estimated.
  { meterId: 'US-EST1', customerId: 'C-US-EST1', tariff: us, intervalMinutes: 30, startRegisterWh: 9, estimated: new Set(range(17, 100)) },
  { meterId: 'US-EST3', customerId: 'C-US-EST3', tariff: us, intervalMinutes: 30, startRegisterWh: 9, estimated: new Set(range(51, 33)) },
  { meterId: 'UTC-1', customerId: 'C-UTC-1', tariff: flat, intervalMinutes: 60, startRegisterWh: 123_456_789 },
];
/** Not in the registry: billed with the registry defaults (tariff `default`, 15 min, customer template). */
const unregistered: FixtureMeter = { meterId: 'ANON-1', customerId: 'unregistered:ANON-1', tariff: flat, intervalMinutes: 15, startRegisterWh: 0 };
const all = [...meters, unregistered];

describe('billing role: closing days and periods from intervals', () => {
  let redisSrv: LocalService;
  let influxSrv: LocalService;
  let influx: Influx;
  let redis: Redis;
  let billing: BillingHandle;
  const truth = new Map<string, FixtureInterval[]>();
  const log = createLogger({ level: 'silent' });

  beforeAll(async () => {
    [redisSrv, influxSrv] = await Promise.all([startRedis(), startInflux()]);
    const config = loadConfig({ REDIS_URL: redisSrv.url, INFLUX_URL: influxSrv.url, INFLUX_API: 'v1', INFLUX_BUCKET: uniquePrefix('bill') });
    influx = await createInflux(config.influx, log);
    await influx.ensureDatabase();
    redis = createRedis(config.redis.url, 'test');
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    const records = meters.map((m): unknown => ({
      meterId: m.meterId,
      customerId: m.customerId,
      class: 'residential',
      tariff: m.tariff.name,
      contractKw: 10,
      feederId: 'F1',
      transformerId: 'T1',
      hasPv: false,
      intervalMinutes: m.intervalMinutes,
    }));
    await registry.upsertMeters(records.filter((r) => checkCustomer.Check(r)));
    expect(await registry.allMeters()).toHaveLength(meters.length);
    const writer = influx.writer({ batchSize: 20_000 });
    for (const m of all) {
      const ivs = ledger(m, FROM, TO);
      truth.set(m.meterId, ivs);
      writer.write(intervalLines(m, ivs));
      writer.write(readingLines(m, ivs));
    }
    await writer.flush();
    // Every shard has passed 2026-04-01 12:00Z: March is over in Shanghai, Los Angeles and UTC.
    await redis.hset(keys.watermark, { 0: String(Date.parse('2026-04-01T12:00:00Z')), 1: String(Date.parse('2026-04-01T13:00:00Z')) });

    const cfg = structuredClone(loadSection('billing', BillingConfig, {}));
    cfg.close.everyMs = 300;
    billing = await startBilling({ config, log, metrics: createMetrics() }, { billing: cfg, tariffs: tariffsCfg, prefix: uniquePrefix('bq') });
  });

  afterAll(async () => {
    await billing?.close();
    await billing?.close(); // safe twice
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

  async function periodReads(): Promise<Map<string, StoredRead>> {
    const src = influxBillingSource(influx);
    const stored = latestPerStart(
      await src.stored(
        PERIOD_MEASUREMENT,
        all.map((m) => m.meterId),
        Date.parse('2026-02-28T00:00:00Z'),
        Date.parse('2026-03-02T00:00:00Z'),
      ),
    );
    return new Map(stored.map((s) => [s.read.meterId, s]));
  }

  it('closes every March day and the March period in each tariff time zone', async () => {
    for (const tz of ['America/Los_Angeles', 'Asia/Shanghai', 'UTC']) {
      await waitFor(`period 2026-03 closed in ${tz}`, async () => {
        const v = await redis.hget(billingKeys.closedPeriods, `${tz}|2026-03`);
        return v !== null && v !== 'closing' ? v : undefined;
      });
    }
    // Every tariff zone (Madrid has no meters here), and the watermark has not passed the end of 2026-04-01 anywhere.
    expect(await redis.hgetall(billingKeys.closedDays)).toEqual({
      'America/Los_Angeles': '2026-03-31',
      'Asia/Shanghai': '2026-03-31',
      'Europe/Madrid': '2026-03-31',
      UTC: '2026-03-31',
    });
    // 02-27 (partial) then every March day; ANON-1 is billed too.
    const src = influxBillingSource(influx);
    const dailies = latestPerStart(
      await src.stored(DAILY_MEASUREMENT, ['CN-1', 'ANON-1'], Date.parse('2026-02-26T00:00:00Z'), Date.parse('2026-04-02T00:00:00Z')),
    );
    expect(
      dailies
        .filter((d) => d.read.meterId === 'CN-1')
        .map((d) => d.read.fromDay)
        .slice(0, 3),
    ).toEqual(['2026-02-27', '2026-02-28', '2026-03-01']);
    expect(dailies.filter((d) => d.read.meterId === 'CN-1')).toHaveLength(33);
    expect(dailies.filter((d) => d.read.meterId === 'ANON-1').map((d) => d.customerId)[0]).toBe('unregistered:ANON-1');
  }, 120_000);

  it('period reads equal the ledger to the Wh, bands sum to the total, quality as gated', async () => {
    const reads = await periodReads();
    const quality: Record<string, string> = {
      'CN-1': 'actual',
      'CN-2': 'actual',
      'CN-GAP': 'incomplete',
      'US-1': 'actual',
      'US-EST1': 'actual',
      'US-EST3': 'estimated',
      'UTC-1': 'actual',
      'ANON-1': 'actual',
    };
    for (const m of all) {
      const got = reads.get(m.meterId);
      if (got === undefined) throw new Error(`no March read for ${m.meterId}`);
      const want = expectedRead(m, truth.get(m.meterId) ?? [], '2026-03-01', '2026-04-01');
      const r = got.read;
      expect({ meter: m.meterId, quality: got.assessment.quality }).toEqual({ meter: m.meterId, quality: quality[m.meterId] });
      expect([r.fromMs, r.toMs]).toEqual([dayWindow(m.tariff.timezone, '2026-03-01').startMs, dayWindow(m.tariff.timezone, '2026-04-01').startMs]);
      expect(r.startRegisterWh).toBe(want.startRegisterWh);
      expect(r.endRegisterWh).toBe(want.endRegisterWh);
      expect(Object.values(r.bands).reduce((s, v) => s + v, 0)).toBe(r.totalWh);
      expect(r.estimatedIntervals).toBe(want.estimatedIntervals);
      if (m.meterId === 'CN-GAP') {
        // Four quarter-hours missing: the registers are right, the interval sum is short by their energy.
        const lost = (truth.get(m.meterId) ?? []).filter((iv) => iv.missing).reduce((s, iv) => s + iv.wh, 0);
        expect(r.totalWh).toBe(want.totalWh - lost);
        expect(got.assessment.completeness).toBe(99.86);
        continue;
      }
      expect(r.totalWh).toBe(want.totalWh);
      expect(r.totalWh).toBe(want.endRegisterWh - want.startRegisterWh);
      expect(r.bands).toEqual(want.bands);
      expect(r.maxDemandW).toBe(want.maxDemandW);
      expect(got.assessment.completeness).toBe(100);
      expect(got.customerId).toBe(m.customerId);
    }
    // Los Angeles March has the 23 h spring-forward day: 743 h of quarter-hours.
    expect(reads.get('US-1')?.read.intervals).toBe(743 * 4);
    expect(reads.get('CN-1')?.read.intervals).toBe(744 * 4);
    expect(reads.get('CN-1')?.read.startInterpolated).toBe(false);
    expect(reads.get('CN-2')?.read.startInterpolated).toBe(true);
    expect(reads.get('CN-2')?.read.endInterpolated).toBe(true);
  });

  it('late data for a closed day is recomputed into the day and the closed period', async () => {
    const m = meters.find((x) => x.meterId === 'CN-GAP');
    if (m === undefined) throw new Error('fixture');
    const ivs = truth.get(m.meterId) ?? [];
    const late = influx.writer();
    late.write(
      intervalLines(
        m,
        ivs.filter((iv) => iv.missing),
        true,
      ),
    );
    await late.flush();
    await billing.queue.addBulk([recomputeJob({ meterId: m.meterId, day: '2026-03-10', entryId: '1-0' }, 3600)]);

    const fixed = await waitFor(
      'CN-GAP recomputed',
      async () => {
        const r = (await periodReads()).get('CN-GAP');
        return r?.assessment.quality === 'actual' ? r : undefined;
      },
      30_000,
    );
    const want = expectedRead(m, ivs, '2026-03-01', '2026-04-01');
    expect([fixed.read.totalWh, fixed.read.startRegisterWh, fixed.read.endRegisterWh]).toEqual([want.totalWh, want.startRegisterWh, want.endRegisterWh]);
    expect(fixed.read.bands).toEqual(want.bands);
    expect(fixed.assessment.completeness).toBe(100);

    const src = influxBillingSource(influx);
    const day = latestPerStart(
      await src.stored(DAILY_MEASUREMENT, ['CN-GAP'], dayWindow(cn.timezone, '2026-03-10').startMs, dayWindow(cn.timezone, '2026-03-11').startMs),
    );
    const wantDay = expectedRead(m, ivs, '2026-03-10', '2026-03-11');
    expect(day.map((d) => [d.read.totalWh, d.assessment.quality])).toEqual([[wantDay.totalWh, 'actual']]);
  }, 60_000);

  it('malformed jobs fail without retries', async () => {
    const job = await billing.queue.add(BILLING_JOBS.recompute, { meterId: 'x', day: 'yesterday' }, { attempts: 5 });
    const failed = await waitFor(
      'malformed job failed',
      async () => {
        const state = await job.getState();
        return state === 'failed' ? state : undefined;
      },
      10_000,
    );
    expect(failed).toBe('failed');
    const again = await billing.queue.getJob(job.id ?? '');
    expect(again?.attemptsMade).toBe(1);
  });
});
