import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIngest, type IngestHandle } from '../../src/ingest/main.js';
import { keys } from '../../src/shared/redis.js';
import { Simulation, type LedgerRow } from '../../simulators/engine.js';
import { generateFleet } from '../../simulators/fleet.js';
import { runSimulation } from '../../simulators/publish.js';
import { loadScenario } from '../../simulators/scenario.js';
import { dlqReasons, eventually, memoryLogger, roleContext, serviceEnv, streamReadings, type TestServices } from '../helpers/pipeline.js';
import { startInflux, startMosquitto, startRedis } from '../helpers/services.js';

const SHARDS = 4;

/** Meter events as the ingest appended them (field `e`). */
async function streamEvents(redis: Redis): Promise<Array<{ meterId: string; event: string }>> {
  const out: Array<{ meterId: string; event: string }> = [];
  for (let s = 0; s < SHARDS; s++) {
    for (const [, fields] of await redis.xrange(keys.readings(s), '-', '+')) {
      const i = fields.indexOf('e');
      const raw = i >= 0 ? fields[i + 1] : undefined;
      const parsed: unknown = raw === undefined ? [] : JSON.parse(raw);
      for (const e of Array.isArray(parsed) ? parsed : []) {
        if (e !== null && typeof e === 'object' && typeof e.meterId === 'string' && typeof e.event === 'string')
          out.push({ meterId: e.meterId, event: e.event });
      }
    }
  }
  return out;
}

describe('simulated fleet through the real ingest', () => {
  let s: TestServices;
  let redis: Redis;
  let ingest: IngestHandle | undefined;

  beforeAll(async () => {
    const [r, m, i] = await Promise.all([startRedis(), startMosquitto(), startInflux()]);
    s = { redis: r, mqtt: m, influx: i };
    redis = new Redis(r.url);
  });

  afterAll(async () => {
    await ingest?.close();
    redis?.disconnect();
    await Promise.all([s?.redis.destroy(), s?.mqtt.destroy(), s?.influx?.destroy()]);
  });

  it.each([
    ['single readings and per-meter backlogs', 0],
    ['concentrator batches', 8],
  ])('%s: every good reading lands once, every malformed one in the DLQ with its reason', async (_name, batch) => {
    await ingest?.close();
    await redis.flushall();
    const { log } = memoryLogger();
    const { ctx } = roleContext(serviceEnv(s, { STREAM_SHARDS: String(SHARDS), MF_INSTANCE: `it-sim-${batch}` }), log);
    ingest = await startIngest(ctx);

    const scenario = loadScenario('simulators/scenarios/small.yaml', { batch }, { now: 0 });
    const ledger: LedgerRow[] = [];
    const sim = new Simulation(generateFleet(scenario), scenario, { onLedger: (r) => ledger.push(r) });
    for (const m of sim.messages()) void m;
    const summary = await runSimulation({ scenario, mqttUrl: s.mqtt.url, respond: false });

    expect(
      await eventually(async () => (await streamReadings(redis, SHARDS)).length >= summary.readings && (await redis.xlen(keys.dlq)) >= summary.rejects, 60_000),
    ).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    const stored = await streamReadings(redis, SHARDS);
    expect(stored.length).toBe(summary.readings);
    expect(new Set(stored.map((r) => `${r.meterId}@${r.ts}`)).size).toBe(summary.readings);

    // Registers as the ledger has them, wherever the reading was published on its interval end.
    const byKey = new Map(stored.map((r) => [`${r.meterId}@${r.ts}`, r]));
    const published = ledger.filter((l) => l.published);
    for (const l of published) expect([l.meterId, byKey.get(`${l.meterId}@${l.ts}`)?.importWh]).toEqual([l.meterId, l.importWh]);

    const truth = sim.plan.truth.filter((t) => t.type === 'malformed');
    expect((await dlqReasons(redis)).sort()).toEqual(truth.map((t) => String(t.params.expectedReason)).sort());

    const outage = sim.plan.truth.find((t) => t.type === 'outage');
    const events = await streamEvents(redis);
    expect(events.filter((e) => e.event === 'lastGasp').length).toBe(Number(outage?.params.lastGasps));
    expect(events.filter((e) => e.event === 'powerRestored').length).toBe(outage?.meters.length);
    // every replaced meter's work order passes the ingest's event validation
    const replaced = sim.plan.truth.filter((t) => t.type === 'registerReset').map((t) => t.meterId);
    expect(replaced).toHaveLength(1); // small.yaml: one register reset
    expect(
      events
        .filter((e) => e.event === 'meterExchange')
        .map((e) => e.meterId)
        .sort(),
    ).toEqual(replaced.sort());
  });
});
