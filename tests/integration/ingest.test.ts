import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIngest, type IngestHandle } from '../../src/ingest/main.js';
import { startStream } from '../../src/stream/main.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { keys } from '../../src/shared/redis.js';
import { dlqReasons, eventually, exited, memoryLogger, roleContext, serviceEnv, spawnRole, streamReadings, type TestServices } from '../helpers/pipeline.js';
import { startInflux, startMosquitto, startRedis } from '../helpers/services.js';

const SHARDS = 4;
const T0 = Math.floor(Date.now() / 900_000) * 900_000 - 30 * 86_400_000; // 30 days ago, on a 15-min boundary

function reading(meter: number, k: number): { meterId: string; ts: number; importWh: number; exportWh: number; powerW: number; voltageV: number } {
  return {
    meterId: `M-${String(meter).padStart(4, '0')}`,
    ts: T0 + k * 900_000,
    importWh: 1_000_000 + k * 250 + meter,
    exportWh: 0,
    powerW: 1000,
    voltageV: 230,
  };
}

async function publishAll(client: MqttClient, msgs: Array<[string, string]>): Promise<void> {
  // Bounded in flight: QoS 1 publishes awaited in windows of 200.
  for (let i = 0; i < msgs.length; i += 200) {
    await Promise.all(msgs.slice(i, i + 200).map(([t, p]) => client.publishAsync(t, p, { qos: 1 })));
  }
}

describe('ingest against real Mosquitto, Redis and influxd', () => {
  let s: TestServices;
  let redis: Redis;
  let influx: Influx;
  let pub: MqttClient;
  let ingest: IngestHandle | undefined;

  beforeAll(async () => {
    const [r, m, i] = await Promise.all([startRedis(), startMosquitto(), startInflux()]);
    s = { redis: r, mqtt: m, influx: i };
    redis = new Redis(r.url);
    pub = await mqtt.connectAsync(m.url, { clientId: 'test-publisher', clean: true });
  });

  afterAll(async () => {
    await ingest?.close();
    await pub?.endAsync();
    redis?.disconnect();
    await Promise.all([s?.redis.destroy(), s?.mqtt.destroy(), s?.influx?.destroy()]);
  });

  it('stores exactly the 1,000 good readings once and dead-letters every malformed one with its reason', async () => {
    const { log } = memoryLogger();
    const { ctx, config } = roleContext(serviceEnv(s, { STREAM_SHARDS: String(SHARDS), MF_INSTANCE: 'it-ingest' }), log);
    ingest = await startIngest(ctx);
    influx = await createInflux(config.influx, log);

    const msgs: Array<[string, string]> = [];
    // 400 singles: 40 meters x 10 intervals
    for (let m = 0; m < 40; m++) for (let k = 0; k < 10; k++) msgs.push([`meters/${reading(m, k).meterId}/readings`, JSON.stringify(reading(m, k))]);
    // 600 in concentrator batches of 50: meters 100..159 x 10 intervals
    const batch: object[] = [];
    for (let m = 100; m < 160; m++) for (let k = 0; k < 10; k++) batch.push(reading(m, k));
    for (let i = 0; i < batch.length; i += 50) msgs.push(['concentrators/T-1/readings', JSON.stringify(batch.slice(i, i + 50))]);
    // a meter's own backlog as an array on its topic
    // duplicates: 30 singles again, one batch again, and a duplicate inside a mixed array
    for (let m = 0; m < 30; m++) msgs.push([`meters/${reading(m, 3).meterId}/readings`, JSON.stringify(reading(m, 3))]);
    msgs.push(['concentrators/T-1/readings', JSON.stringify(batch.slice(0, 50))]);
    // malformed: 9 whole-message or element rejections, each neighbouring good data
    const bad: Array<[string, string]> = [
      ['meters/M-0001/readings', '{"meterId":"M-0001",'],
      ['meters/M-0001/readings', '"just a string"'],
      ['meters/M-0001/readings', JSON.stringify({ ...reading(1, 0), meterId: 'M-0002' })],
      ['meters/M-0001/readings', JSON.stringify({ ...reading(1, 0), importWh: -3 })],
      ['meters/M-0001/readings', JSON.stringify({ ...reading(1, 0), importWh: 12.5 })],
      ['meters/M-0001/readings', JSON.stringify({ ...reading(1, 0), ts: 'not a time' })],
      ['meters/M-0001/readings', JSON.stringify({ ...reading(1, 0), ts: Date.now() + 3_600_000 })],
      ['concentrators/T-1/readings', JSON.stringify([reading(100, 0), { meterId: 'M-0100', ts: reading(100, 0).ts }, reading(101, 1)])],
      ['meters/x/y/readings', JSON.stringify(reading(1, 0))],
      // meter exchange work orders without a usable install read
      ['headend/meters/M-0001/exchange', JSON.stringify({ meterId: 'M-0001', ts: T0, event: 'meterExchange', removalWh: 1_000_000 })],
      ['headend/meters/M-0001/exchange', JSON.stringify({ meterId: 'M-0001', ts: T0, event: 'meterExchange', installWh: 12, removalWh: -1 })],
      // a good work order, but on the meter's own events topic: only the head end may order an exchange
      ['meters/M-0001/events', JSON.stringify({ meterId: 'M-0001', ts: T0, event: 'meterExchange', installWh: 12, removalWh: 1_000_000 })],
      // hostile: a 20,000-deep array (its dead letter once overflowed the stack and wedged every later PUBACK)
      ['meters/M-0001/readings', '['.repeat(20_000) + ']'.repeat(20_000)],
    ];
    msgs.push(...bad);
    const exchange = { meterId: 'M-0001', ts: T0 + 900_000, event: 'meterExchange', installWh: 12, removalWh: 1_000_251, installExportWh: 0 };
    msgs.push(['headend/meters/M-0001/exchange', JSON.stringify(exchange)]);
    // redelivered (or sent twice by the head end): appended once
    msgs.push(['headend/meters/M-0001/exchange', JSON.stringify(exchange)]);
    await publishAll(pub, msgs);

    const expectedReasons = [
      'not_json',
      'not_object',
      'meter_mismatch',
      'register_negative',
      'register_not_integer',
      'bad_timestamp',
      'future_timestamp',
      'missing_field',
      'missing_field',
      'register_negative',
      'exchange_not_from_headend',
      'not_object',
    ].sort();
    // `meters/x/y/readings` matches no subscription, so the broker never delivers it: nothing to dead-letter.
    expect(
      await eventually(
        async () =>
          (await dlqReasons(redis)).length >= expectedReasons.length &&
          ingest !== undefined &&
          ingest.ingestor.totals.messages >= msgs.length - 1 &&
          // A message is counted when its hand-off starts, its readings when it ends: wait for those too.
          ingest.ingestor.totals.readings + ingest.ingestor.totals.duplicates >= 1000 + 83,
        30_000,
      ),
    ).toBe(true);

    const stored = await streamReadings(redis, SHARDS);
    expect(stored.length).toBe(1000);
    expect(new Set(stored.map((r) => `${r.meterId}|${r.ts}`)).size).toBe(1000);
    expect((await dlqReasons(redis)).sort()).toEqual(expectedReasons);
    const totals = ingest.ingestor.totals;
    expect(totals.readings).toBe(1000);
    expect(totals.duplicates).toBe(30 + 50 + 2 + 1); // repeated singles, repeated batch, 2 re-sent readings in the mixed array, the repeated work order
    expect(totals.rejected).toBe(12);
    expect(totals.byReason).toMatchObject({ missing_field: 2, register_negative: 2, not_object: 2, exchange_not_from_headend: 1 });
    // the good work order reaches the meter's shard as a meter event, registers and all
    expect(totals.events).toBe(1);
    const entries = (await Promise.all(Array.from({ length: SHARDS }, (_, k) => redis.xrange(keys.readings(k), '-', '+')))).flat();
    const events: unknown[] = entries.flatMap(([, f]) => (f.includes('e') ? [JSON.parse(f[f.indexOf('e') + 1] ?? '[]')] : []));
    expect(events).toEqual([[exchange]]);

    await ingest.close();
    ingest = undefined;
    // The raw `reading` archive is written from the durable side: the stream worker, from the stream, before it
    // acknowledges the entries (so a crash of either role cannot leave an acknowledged read out of it).
    expect(await influx.query('SELECT count(import_wh) FROM reading')).toEqual([]);
    const stream = await startStream(ctx);
    const count = async (where = ''): Promise<unknown> => (await influx.query(`SELECT count(import_wh) FROM reading ${where}`))[0]?.values[0]?.[1];
    expect(await eventually(async () => (await count()) === 1000, 30_000)).toBe(true);
    await stream.close();
    expect(await count(`WHERE meter = 'M-0100'`)).toBe(10);
  });

  it('remembers a span of event time per meter: a day of 5-min reads sent twice is appended once, the set stays alive', async () => {
    await redis.flushall();
    const { ctx } = roleContext(serviceEnv(s, { STREAM_SHARDS: String(SHARDS), MF_INSTANCE: 'it-dedup', MQTT_CLIENT_ID: 'dedup-test' }));
    const handle = await startIngest(ctx);
    try {
      // 288 reads (a day at 5 min) of one meter in concentrator batches of 96, twice: the old count-capped set
      // (newest 100) let 188 of them through again.
      const backlog = Array.from({ length: 288 }, (_, k) => ({ ...reading(7, 0), ts: T0 + k * 300_000, importWh: 1_000_000 + k * 80 }));
      const batches: Array<[string, string]> = [];
      for (let i = 0; i < backlog.length; i += 96) batches.push(['concentrators/C-9/readings', JSON.stringify(backlog.slice(i, i + 96))]);
      await publishAll(pub, batches);
      await publishAll(pub, batches);
      // Counted at the end of each hand-off (a message is counted when it starts): wait for all 576.
      expect(await eventually(async () => handle.ingestor.totals.readings + handle.ingestor.totals.duplicates >= 576, 20_000)).toBe(true);
      expect(handle.ingestor.totals).toMatchObject({ readings: 288, duplicates: 288 });
      expect((await streamReadings(redis, SHARDS)).length).toBe(288);
      const seenKey = (await redis.keys('mf:seen:*'))[0] ?? '';
      // The window is 30 h of event time back from the newest read: all 288 are remembered.
      expect(await redis.zcard(seenKey)).toBe(288);
      // ... and it moves with the newest read: one 7 h later leaves the 11 oldest (the first 55 min) behind.
      await publishAll(pub, [['meters/M-0007/readings', JSON.stringify({ ...reading(7, 0), ts: T0 + 287 * 300_000 + 7 * 3_600_000, importWh: 2_000_000 })]]);
      expect(await eventually(async () => (await redis.zcard(seenKey)) === 288 + 1 - 11, 10_000)).toBe(true);
      expect(await redis.ttl(seenKey)).toBeGreaterThan(71 * 3600);
      const bytes = Number(await redis.call('MEMORY', 'USAGE', seenKey));
      console.log(`dedup seen-set of a 5-min meter (30 h): ${await redis.object('ENCODING', seenKey)}, ${bytes} bytes`);
      expect(bytes).toBeLessThan(32_768);
    } finally {
      await handle.close();
    }
  }, 60_000);

  it("keeps a 15-min meter's dedup set compact after a backlog pushed it past the compact size", async () => {
    await redis.flushall();
    const { ctx } = roleContext(serviceEnv(s, { STREAM_SHARDS: String(SHARDS), MF_INSTANCE: 'it-dedup15', MQTT_CLIENT_ID: 'dedup15-test' }));
    const handle = await startIngest(ctx);
    try {
      // 30 h of 15-min reads (121 in the window), then 2 days of backlog in one array: 193 new before the trim.
      const Q = 900_000;
      const reads = Array.from({ length: 121 + 192 }, (_, k) => ({ ...reading(8, 0), ts: T0 + k * Q, importWh: 1_000_000 + k * 100 }));
      await publishAll(pub, [['concentrators/C-8/readings', JSON.stringify(reads.slice(0, 121))]]);
      await publishAll(pub, [['meters/M-0008/readings', JSON.stringify(reads.slice(121))]]);
      expect(await eventually(async () => handle.ingestor.totals.readings === reads.length, 20_000)).toBe(true);
      const seenKey = (await redis.keys('mf:seen:*'))[0] ?? '';
      expect(await redis.zcard(seenKey)).toBe(121);
      expect(await redis.object('ENCODING', seenKey)).toBe('listpack');
      expect(await redis.ttl(seenKey)).toBeGreaterThan(71 * 3600);
    } finally {
      await handle.close();
    }
  }, 60_000);

  it('keeps every reading, in order per meter, when the ingest loses its connection under a QoS 1 backlog', async () => {
    await redis.flushall();
    const logs = memoryLogger('info');
    const { ctx } = roleContext(serviceEnv(s, { STREAM_SHARDS: String(SHARDS), MF_INSTANCE: 'it-restart', MQTT_CLIENT_ID: 'restart-test' }), logs.log);
    const handle = await startIngest(ctx);
    const publisher = await mqtt.connectAsync(s.mqtt.url, { clientId: 'restart-publisher', clean: false, reconnectPeriod: 200 });
    const total = 6000;
    const msgs: Array<[string, string]> = [];
    for (let k = 0; k < total / 30; k++) for (let m = 0; m < 30; m++) msgs.push([`meters/${reading(m, k).meterId}/readings`, JSON.stringify(reading(m, k))]);
    // Like the simulator: up to 1000 publishes waiting for their PUBACK.
    let inFlight = 0;
    let wake: (() => void) | undefined;
    const publishing = (async () => {
      for (const [t, p] of msgs) {
        while (inFlight >= 1000) await new Promise<void>((r) => (wake = r));
        inFlight++;
        publisher.publish(t, p, { qos: 1 }, () => {
          inFlight--;
          wake?.();
          wake = undefined;
        });
      }
      while (inFlight > 0) await new Promise<void>((r) => (wake = r));
    })();
    expect(await eventually(async () => (await streamReadings(redis, SHARDS)).length >= 1500, 60_000, 20)).toBe(true);
    // The ingest loses its connection (as on a keepalive timeout): another connection takes its session over and
    // drops at once; the ingest reconnects to its persistent session.
    const thief = await mqtt.connectAsync(s.mqtt.url, { clientId: 'restart-test-ingest', clean: false, reconnectPeriod: 0 });
    thief.stream.destroy();
    await publishing;
    const done = await eventually(async () => new Set((await streamReadings(redis, SHARDS)).map((r) => `${r.meterId}|${r.ts}`)).size >= total, 60_000, 200);
    await handle.close();
    await publisher.endAsync();
    expect(
      logs.lines.some((l) => l.includes('mqtt offline')),
      'the takeover did not disconnect the ingest',
    ).toBe(true);
    const stored = await streamReadings(redis, SHARDS);
    expect(done, `${new Set(stored.map((r) => `${r.meterId}|${r.ts}`)).size}/${total}\n${logs.lines.join('\n').slice(-3000)}`).toBe(true);
    const lastTs = new Map<string, number>();
    const overtaken: string[] = [];
    for (const r of stored) {
      if ((lastTs.get(r.meterId) ?? -Infinity) > r.ts)
        overtaken.push(`${r.meterId}@${(r.ts - T0) / 900_000} after ${((lastTs.get(r.meterId) ?? 0) - T0) / 900_000}`);
      lastTs.set(r.meterId, Math.max(lastTs.get(r.meterId) ?? -Infinity, r.ts));
    }
    expect(overtaken.slice(0, 20)).toEqual([]);
  }, 240_000);

  it('loses no acknowledged reading when the ingest process is SIGKILLed under a QoS 1 backlog', async () => {
    await redis.flushall();
    const env = serviceEnv(s, { STREAM_SHARDS: String(SHARDS), MF_INSTANCE: 'it-kill', MQTT_CLIENT_ID: 'kill-test' });
    let child = spawnRole('ingest', env);
    // The persistent session must exist before publishing so the broker queues for it while it is dead.
    expect(await eventually(async () => String(await redis.client('LIST')).includes('meterflow-ingest'), 60_000), child.output()).toBe(true);
    await new Promise((r) => setTimeout(r, 300));

    const total = 3000;
    const msgs: Array<[string, string]> = [];
    for (let k = 0; k < total / 30; k++) for (let m = 0; m < 30; m++) msgs.push([`meters/${reading(m, k).meterId}/readings`, JSON.stringify(reading(m, k))]);
    const publishing = publishAll(pub, msgs);
    expect(await eventually(async () => (await streamReadings(redis, SHARDS)).length >= 300, 30_000, 20), child.output()).toBe(true);
    child.kill('SIGKILL');
    await exited(child);
    const atKill = (await streamReadings(redis, SHARDS)).length;
    // What the broker acknowledged to the publisher is what must not be lost.
    await publishing;
    child = spawnRole('ingest', env);
    const done = await eventually(async () => (await streamReadings(redis, SHARDS)).length >= total, 120_000, 200);
    child.kill('SIGTERM');
    await exited(child);
    const have = new Set((await streamReadings(redis, SHARDS)).map((r) => `${r.meterId}|${r.ts}`));
    const got = have.size;
    const missing = msgs
      .map(([, p]) => JSON.parse(p) as { meterId: string; ts: number })
      .filter((r) => !have.has(`${r.meterId}|${r.ts}`))
      .map((r) => `${r.meterId}@${(r.ts - T0) / 900_000}`);
    expect(
      done,
      `${got}/${total} readings after restart (${atKill} at the kill); missing ${missing.slice(0, 30).join(' ')}; dlq ${(await dlqReasons(redis)).join(',')}; ${child.output()}`,
    ).toBe(true);
    expect(atKill).toBeLessThan(total);
    const stored = await streamReadings(redis, SHARDS);
    const ids = new Set(stored.map((r) => `${r.meterId}|${r.ts}`));
    expect(ids.size).toBe(total);
    expect(stored.length).toBe(total);
    // And in order per meter: a redelivery never lets a later reading overtake an earlier one (the stream worker
    // would have to treat the earlier one as late).
    const lastTs = new Map<string, number>();
    const overtaken: string[] = [];
    for (const r of stored) {
      if ((lastTs.get(r.meterId) ?? -Infinity) > r.ts) overtaken.push(`${r.meterId}@${(r.ts - T0) / 900_000}`);
      lastTs.set(r.meterId, Math.max(lastTs.get(r.meterId) ?? -Infinity, r.ts));
    }
    expect(overtaken.slice(0, 20)).toEqual([]);
  }, 240_000);
});
