import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Compile } from 'typebox/compile';
import { afterAll, describe, expect, it } from 'vitest';
import { DAILY_MEASUREMENT, PERIOD_MEASUREMENT } from '../../src/contracts/billing.js';
import { billingKeys, latestPerStart } from '../../src/shared/billing-store.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import { TariffsConfigSchema } from '../../src/contracts/config-tariffs.js';
import { CustomerRecord } from '../../src/contracts/registry.js';
import { influxBillingSource } from '../../src/billing/source.js';
import { compileTariffs, tariffFor } from '../../src/domain/tariffs.js';
import { loadSection } from '../../src/shared/config.js';
import { createInflux } from '../../src/shared/influx.js';
import { createLogger } from '../../src/shared/logger.js';
import { closeRedis, createRedis, keys } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { expectedRead, intervalLines, ledger, type FixtureInterval, type FixtureMeter } from '../integration/billing-fixture.js';
import { exited, serviceEnv, spawnRole } from '../helpers/pipeline.js';
import { startInflux, startMosquitto, startRedis, type LocalService } from '../helpers/services.js';

/**
 * Fault suite: the billing role SIGKILLed while it closes two months of days for 60 meters, then restarted.
 * Every daily read exists once per meter and day, and every period read equals the register delta to the Wh.
 */

const FROM = Date.parse('2026-01-01T00:00:00Z');
const TO = Date.parse('2026-03-02T00:00:00Z');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const checkCustomer = Compile(CustomerRecord);

describe('fault suite: billing killed mid-close', () => {
  const services: LocalService[] = [];
  afterAll(async () => {
    for (const s of services) await s.destroy().catch(() => undefined);
  });

  it('SIGKILL of billing while closing days: after a restart each day is read once, periods equal the register deltas', async () => {
    const [redisSvc, mqttSvc, influxSvc] = await Promise.all([startRedis(), startMosquitto(), startInflux()]);
    services.push(redisSvc, mqttSvc, influxSvc);
    const tariffs = compileTariffs(loadSection('tariffs', TariffsConfigSchema, {}), 'UTC');
    const zones = ['default', 'cn-tou', 'us-tou'] as const;
    const meters: FixtureMeter[] = Array.from({ length: 60 }, (_, i) => ({
      meterId: `B-${String(i).padStart(3, '0')}`,
      customerId: `C-B-${i}`,
      tariff: tariffFor(tariffs, zones[i % 3] ?? 'default'),
      intervalMinutes: 15,
      startRegisterWh: 1000 * i,
    }));
    const dir = mkdtempSync(join(tmpdir(), 'mf-fault-billing-'));
    const cfgFile = join(dir, 'overrides.yaml');
    writeFileSync(cfgFile, 'billing:\n  close: { everyMs: 1000, meterChunk: 20 }\n');
    const env = serviceEnv({ redis: redisSvc, mqtt: mqttSvc, influx: influxSvc }, { MF_CONFIG: cfgFile, MF_INSTANCE: 'fault-billing', INFLUX_API: 'v1' });
    const log = createLogger({ level: 'silent' });
    const influx = await createInflux({ url: influxSvc.url, bucket: 'meterflow' }, log);
    await influx.ensureDatabase();
    const redis = createRedis(redisSvc.url, 'fault-billing');
    try {
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
        intervalMinutes: 15,
      }));
      await registry.upsertMeters(records.filter((r) => checkCustomer.Check(r)));
      const truth = new Map<string, FixtureInterval[]>();
      const writer = influx.writer({ batchSize: 20_000 });
      for (const m of meters) {
        const ivs = ledger(m, FROM, TO);
        truth.set(m.meterId, ivs);
        writer.write(intervalLines(m, ivs));
      }
      await writer.flush();
      await redis.hset(keys.watermark, { 0: String(TO + 12 * 3_600_000) });

      let child = spawnRole('billing', env);
      // Mid-close: some daily reads written, far from all.
      const expectedDays = meters.length * 59;
      let written = 0;
      const count = async (): Promise<number> => Number((await influx.query(`SELECT count("total_wh") FROM "${DAILY_MEASUREMENT}"`))[0]?.values[0]?.[1] ?? 0);
      for (let i = 0; i < 600 && written < expectedDays * 0.15; i++) {
        await sleep(100);
        written = await count();
      }
      child.kill('SIGKILL');
      await exited(child);
      const atKill = await count();
      expect(atKill, child.output()).toBeGreaterThan(0);
      expect(atKill).toBeLessThan(expectedDays);

      child = spawnRole('billing', env);
      const closed = async (): Promise<boolean> => {
        const p = await redis.hgetall(billingKeys.closedPeriods);
        return ['UTC', 'Asia/Shanghai', 'America/Los_Angeles'].every((tz) => p[`${tz}|2026-02`] !== undefined && p[`${tz}|2026-02`] !== 'closing');
      };
      for (let i = 0; i < 1200 && !(await closed()); i++) await sleep(200);
      child.kill('SIGTERM');
      await exited(child);
      expect(await closed(), child.output()).toBe(true);

      const src = influxBillingSource(influx);
      const ids = meters.map((m) => m.meterId);
      const dailies = await src.stored(DAILY_MEASUREMENT, ids, Date.parse('2026-01-02T00:00:00Z') - 86_400_000, Date.parse('2026-03-01T00:00:00Z'));
      const perDay = new Map<string, number>();
      for (const d of dailies) perDay.set(`${d.read.meterId}|${d.read.fromDay}`, (perDay.get(`${d.read.meterId}|${d.read.fromDay}`) ?? 0) + 1);
      expect([...perDay.values()].filter((n) => n !== 1)).toEqual([]);
      const periods = latestPerStart(await src.stored(PERIOD_MEASUREMENT, ids, Date.parse('2026-01-31T00:00:00Z'), Date.parse('2026-02-02T00:00:00Z')));
      const off: string[] = [];
      for (const m of meters) {
        const got = periods.find((p) => p.read.meterId === m.meterId && p.read.fromDay === '2026-02-01');
        const want = expectedRead(m, truth.get(m.meterId) ?? [], '2026-02-01', '2026-03-01');
        if (got === undefined || got.read.totalWh !== want.totalWh || got.read.totalWh !== want.endRegisterWh - want.startRegisterWh) {
          off.push(`${m.meterId}: ${got?.read.totalWh} != ${want.totalWh}`);
        }
      }
      expect(off).toEqual([]);
    } finally {
      await influx.close();
      await closeRedis(redis);
    }
  }, 400_000);
});
