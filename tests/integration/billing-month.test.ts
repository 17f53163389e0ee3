import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { Compile } from 'typebox/compile';
import { buildApp, type ApiApp } from '../../src/api/app.js';
import { startBilling, type BillingHandle } from '../../src/billing/main.js';
import { BILLING_JOBS } from '../../src/contracts/billing.js';
import { billingKeys } from '../../src/shared/billing-store.js';
import { readProfiles } from '../../src/shared/profile-store.js';
import type { Registry } from 'prom-client';
import { BillingConfig } from '../../src/contracts/config-billing.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import { TariffsConfigSchema } from '../../src/contracts/config-tariffs.js';
import { CustomerRecord } from '../../src/contracts/registry.js';
import { dayWindow } from '../../src/domain/local-time.js';
import { bandAt, compileTariffs, tariffFor } from '../../src/domain/tariffs.js';
import { startIngest } from '../../src/ingest/main.js';
import { loadSection } from '../../src/shared/config.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { closeRedis, createRedis, keys } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import type { RoleHandle } from '../../src/shared/role.js';
import { startStream } from '../../src/stream/main.js';
import { generateFleet } from '../../simulators/fleet.js';
import { runSimulation, type SimSummary } from '../../simulators/publish.js';
import { loadScenario } from '../../simulators/scenario.js';
import { memoryLogger, roleContext, serviceEnv } from '../helpers/pipeline.js';
import { startInflux, startMosquitto, startRedis, uniquePrefix, type LocalService } from '../helpers/services.js';
import { readsOf } from './billing-fixture.js';

/**
 * A simulated month for 50 meters through the real pipeline (simulator → Mosquitto → ingest → Redis Streams →
 * stream worker → InfluxDB intervals → billing), with silent gaps, duplicates, out-of-order readings and a
 * concentrator backlog delivered hours late across midnight. Every meter's March read must satisfy the
 * invariant and equal the simulator's own ledger to the Wh.
 */

const checkCustomer = Compile(CustomerRecord);
const tariffs = compileTariffs(loadSection('tariffs', TariffsConfigSchema, {}), 'UTC');
const ZONES = ['America/Los_Angeles', 'Asia/Shanghai', 'UTC'];
const TOKEN = 'billing-month-token';

const scenario = loadScenario(
  {
    name: 'billing-month',
    seed: 2026_03,
    timezone: 'UTC',
    from: '2026-02-28T00:00:00Z',
    to: '2026-04-02T06:00:00Z',
    batch: 10,
    fleet: {
      meters: 50,
      feeders: 2,
      metersPerTransformer: [6, 12],
      intervalMix: { '15': 0.6, '30': 0.2, '60': 0.2 },
      pvShare: 0.2,
      tariffs: { residential: 'us-tou', commercial: 'cn-tou', industrial: 'default', critical: 'cn-tou' },
    },
    // Silent gaps mid-month, away from the month boundaries (filled by estimation when reads resume).
    anomalies: { window: { start: '3d', end: '4d' }, silent: { count: 4, subtleShare: 0 } },
    transport: {
      duplicates: { count: 80 },
      outOfOrder: { count: 40 },
      // A concentrator flushes 5-6 h of backlog late, across midnight UTC 2026-03-10: intervals of closed days.
      lateBatches: { count: 1, hours: [5, 6], window: { start: '9.875d', end: '+10.125d' } },
      malformed: { count: 6 },
    },
  },
  {},
  { now: Date.parse('2026-11-01T00:00:00Z') },
);

interface LedgerRow {
  ts: number;
  importWh: number;
  published: boolean;
}

function readLedger(file: string): Map<string, LedgerRow[]> {
  const out = new Map<string, LedgerRow[]>();
  const lines = readFileSync(file, 'utf8').split('\n');
  for (const line of lines.slice(1)) {
    if (line === '') continue;
    const [meterId, ts, importWh, , published] = line.split(',');
    if (meterId === undefined) continue;
    const list = out.get(meterId) ?? [];
    list.push({ ts: Number(ts), importWh: Number(importWh), published: published === '1' });
    out.set(meterId, list);
  }
  for (const list of out.values()) list.sort((a, b) => a.ts - b.ts);
  return out;
}

describe('billing: a simulated month through the real pipeline', () => {
  const svc: { redis?: LocalService; mqtt?: LocalService; influx?: LocalService } = {};
  const roles: RoleHandle[] = [];
  let billing: BillingHandle;
  let redis: Redis;
  let influx: Influx;
  let app: ApiApp;
  let dir: string;
  let summary: SimSummary;
  const fleet = generateFleet(scenario);
  let logs: string[] = [];
  let metrics: Registry;

  beforeAll(async () => {
    [svc.redis, svc.mqtt, svc.influx] = await Promise.all([startRedis(), startMosquitto(), startInflux()]);
    dir = mkdtempSync(join(tmpdir(), 'mf-billing-month-'));
    const env = serviceEnv(
      { redis: svc.redis, mqtt: svc.mqtt, influx: svc.influx },
      {
        INFLUX_API: 'v1',
        INFLUX_BUCKET: uniquePrefix('month'),
        MF_TIMEZONE: 'UTC',
        API_TOKENS: JSON.stringify({ [TOKEN]: ['billing:read'] }),
      },
    );
    const { log, lines: logLines } = memoryLogger('warn');
    logs = logLines;
    const { ctx, config } = roleContext(env, log);
    metrics = ctx.metrics;
    redis = createRedis(config.redis.url, 'test');
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    const records = fleet.customers.filter((c) => checkCustomer.Check(c));
    expect(records).toHaveLength(50);
    await registry.upsertMeters(records);

    roles.push(await startIngest(ctx));
    roles.push(await startStream(ctx));
    const cfg = structuredClone(loadSection('billing', BillingConfig, {}));
    cfg.close.everyMs = 500;
    billing = await startBilling(ctx, { billing: cfg });
    roles.push(billing);
    influx = await createInflux(config.influx, log);
    app = await buildApp({ config, log, metrics: ctx.metrics, redis, influx, registry }, { docs: false });
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    for (const r of roles.reverse()) await r.close();
    await influx?.close();
    if (redis) await closeRedis(redis);
    await Promise.all([svc.redis?.destroy(), svc.mqtt?.destroy(), svc.influx?.destroy()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("closes March with every meter's read equal to the ledger", async () => {
    summary = await runSimulation({ scenario, mqttUrl: svc.mqtt?.url, outDir: dir, backfill: true, respond: false, clientId: 'billing-month-sim' });
    expect(summary.meters).toBe(50);
    expect(summary.duplicates).toBeGreaterThanOrEqual(80);

    // Everything consumed (the newest reads are at 06:00Z, minus 30 min lateness), March closed everywhere,
    // and no billing job (a late-data recompute) left to run.
    const deadline = Date.now() + 240_000;
    let settled = 0;
    while (settled < 3) {
      if (Date.now() > deadline) {
        const lens = await Promise.all([0, 1, 2, 3].map((sh) => redis.xlen(keys.readings(sh))));
        throw new Error(
          `pipeline did not settle: watermarks ${JSON.stringify(await redis.hgetall(keys.watermark))}, stream lengths ${lens.join(',')}, ` +
            `closed ${JSON.stringify(await redis.hgetall(billingKeys.closedPeriods))}, logs: ${logs.slice(-10).join('\n')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 1000));
      const wm = Object.values(await redis.hgetall(keys.watermark)).map(Number);
      const closed = await redis.hgetall(billingKeys.closedPeriods);
      // Real work left: any billing job but the repeatable tick (a recompute waiting, running or retrying).
      const jobs = await billing.queue.getJobs(['waiting', 'active', 'delayed', 'prioritized']);
      const busy = jobs.filter((j) => j.name !== BILLING_JOBS.tick).length;
      const done =
        wm.length === 4 &&
        Math.min(...wm) >= Date.parse('2026-04-02T05:00:00Z') &&
        ZONES.every((z) => /^\d+$/.test(closed[`${z}|2026-03`] ?? '')) &&
        busy === 0;
      settled = done ? settled + 1 : 0;
    }
    // Whether the late backlog lands in a day the watermark has already closed depends on how the ingest batches the
    // backfill into stream entries (the watermark moves per entry), so recomputes may or may not be needed here;
    // those that ran all completed, and the reads below are exact either way. The recompute path itself is pinned by
    // billing-close.test.ts (late data for a closed day) and shard-work-exchange.test.ts (late batches enqueue it).
    const jobs = (await metrics.getSingleMetric('meterflow_billing_jobs_total')?.get())?.values ?? [];
    expect(jobs.filter((v) => v.labels.outcome === 'failed')).toEqual([]);

    const ledger = readLedger(join(dir, 'ledger.csv'));
    const res = await app.inject({ method: 'GET', url: '/api/v1/billing/periods/2026-03/reads?limit=1000', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.statusCode).toBe(200);
    const body = readsOf(res);
    expect(body.items).toHaveLength(50);
    expect(body.nextCursor).toBeNull();

    let withEstimates = 0;
    let exactBands = 0;
    for (const item of body.items) {
      const meter = fleet.meters.find((m) => m.meterId === item.meterId);
      if (meter === undefined) throw new Error(`unknown meter ${item.meterId}`);
      const tariff = tariffFor(tariffs, meter.tariff);
      const rows = ledger.get(item.meterId) ?? [];
      const from = dayWindow(tariff.timezone, '2026-03-01').startMs;
      const to = dayWindow(tariff.timezone, '2026-04-01').startMs;
      const at = (ts: number): LedgerRow | undefined => rows.find((r) => r.ts === ts);
      const start = at(from);
      const end = at(to);
      if (start === undefined || end === undefined) throw new Error(`ledger has no ${item.meterId} register at the month boundaries`);
      expect({ meter: item.meterId, published: [start.published, end.published] }).toEqual({ meter: item.meterId, published: [true, true] });

      // The invariant and the ledger, to the Wh.
      expect({ meter: item.meterId, start: item.startRegisterWh, end: item.endRegisterWh, total: item.totalWh }).toEqual({
        meter: item.meterId,
        start: start.importWh,
        end: end.importWh,
        total: end.importWh - start.importWh,
      });
      expect(Object.values(item.bands).reduce((s, v) => s + v, 0)).toBe(item.totalWh);
      expect([item.completeness, item.customerId, item.tariff, item.timezone]).toEqual([100, meter.customerId, tariff.name, tariff.timezone]);
      expect(item.intervals).toBe((to - from) / (meter.intervalMinutes * 60_000));

      if (item.estimatedIntervals > 0) {
        withEstimates++;
        expect(item.quality).toBe(item.estimatedIntervals * 100 > 2 * item.intervals ? 'estimated' : 'actual');
        continue;
      }
      // Without estimates every interval is measured: the bands follow from the ledger alone.
      const bands: Record<string, number> = Object.fromEntries(tariff.bands.map((b) => [b, 0]));
      for (let i = 1; i < rows.length; i++) {
        const prev = rows[i - 1];
        const cur = rows[i];
        if (prev === undefined || cur === undefined || prev.ts < from || cur.ts > to) continue;
        const band = bandAt(tariff, prev.ts);
        bands[band] = (bands[band] ?? 0) + cur.importWh - prev.importWh;
      }
      expect({ meter: item.meterId, bands: item.bands }).toEqual({ meter: item.meterId, bands });
      expect(item.quality).toBe('actual');
      exactBands++;
    }
    // The silent meters were estimated across their gaps; the others match the ledger band by band.
    expect(withEstimates).toBeGreaterThanOrEqual(1);
    expect(exactBands + withEstimates).toBe(50);

    // The /reads range over the same days agrees with the stored period reads; CSV agrees with JSON.
    const range = readsOf(
      await app.inject({ method: 'GET', url: '/api/v1/billing/reads?from=2026-03-01&to=2026-04-01&limit=1000', headers: { authorization: `Bearer ${TOKEN}` } }),
    );
    expect(range.items).toEqual(body.items);
    const csv = await app.inject({
      method: 'GET',
      url: '/api/v1/billing/reads?from=2026-03-01&to=2026-04-01&limit=1000',
      headers: { authorization: `Bearer ${TOKEN}`, accept: 'text/csv' },
    });
    const lines = csv.body.trim().split('\r\n');
    const header = (lines[0] ?? '').split(',');
    expect(lines).toHaveLength(51);
    lines.slice(1).forEach((line, i) => {
      const cells = line.split(',');
      const item = range.items[i];
      expect(cells[header.indexOf('meterId')]).toBe(item?.meterId);
      expect(Number(cells[header.indexOf('totalWh')])).toBe(item?.totalWh);
      expect(Number(cells[header.indexOf('endRegisterWh')])).toBe(item?.endRegisterWh);
      for (const b of tariffs.allBands) expect(cells[header.indexOf(`band_${b}_wh`)]).toBe(item?.bands[b] === undefined ? '' : String(item.bands[b]));
    });
  }, 600_000);

  it("profiles March: every customer's energy equals the ledger to the Wh", async () => {
    // The close-month jobs were enqueued with the March periods; wait for them (and any re-close after late data).
    const deadline = Date.now() + 120_000;
    for (;;) {
      const months = await redis.hgetall(billingKeys.profiledMonths);
      const jobs = await billing.queue.getJobs(['waiting', 'active', 'delayed', 'prioritized']);
      if (ZONES.every((z) => /^\d+$/.test(months[`${z}|2026-03`] ?? '')) && jobs.every((j) => j.name === BILLING_JOBS.tick)) break;
      if (Date.now() > deadline) throw new Error(`March not profiled: ${JSON.stringify(months)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const ledger = readLedger(join(dir, 'ledger.csv'));
    const profiles = await readProfiles(influx, ['2026-03']);
    const customers = [...new Set(fleet.meters.map((m) => m.customerId))].sort();
    expect(profiles.map((p) => p.customerId)).toEqual(customers);
    for (const p of profiles) {
      let want = 0;
      for (const meter of fleet.meters.filter((m) => m.customerId === p.customerId)) {
        const tariff = tariffFor(tariffs, meter.tariff);
        const rows = ledger.get(meter.meterId) ?? [];
        const start = rows.find((r) => r.ts === dayWindow(tariff.timezone, '2026-03-01').startMs);
        const end = rows.find((r) => r.ts === dayWindow(tariff.timezone, '2026-04-01').startMs);
        if (start === undefined || end === undefined) throw new Error(`ledger has no ${meter.meterId} register at the month boundaries`);
        want += end.importWh - start.importWh;
      }
      expect({ customer: p.customerId, energyWh: p.energyWh }).toEqual({ customer: p.customerId, energyWh: want });
      expect(p.bands.reduce((s, b) => s + b.wh, 0)).toBe(p.energyWh);
      expect(p.quality).not.toBe('incomplete');
    }
  }, 180_000);
});
