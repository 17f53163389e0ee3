import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIngest, type IngestHandle } from '../../src/ingest/main.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { dlqReasons, eventually, exited, memoryLogger, roleContext, serviceEnv, spawnRole, streamReadings, type TestServices } from '../helpers/pipeline.js';
import { startInflux, startMosquitto, startRedis } from '../helpers/services.js';

const SHARDS = 4;
const T0 = Math.floor(Date.now() / 900_000) * 900_000 - 30 * 86_400_000; // 30 days ago, on a 15-min boundary

function reading(meter: number, k: number): { meterId: string; ts: number; importWh: number; exportWh: number; powerW: number; voltageV: number } {
  return { meterId: `M-${String(meter).padStart(4, '0')}`, ts: T0 + k * 900_000, importWh: 1_000_000 + k * 250 + meter, exportWh: 0, powerW: 1000, voltageV: 230 };
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
    ];
    msgs.push(...bad);
    await publishAll(pub, msgs);

    const expectedReasons = ['not_json', 'not_object', 'meter_mismatch', 'register_negative', 'register_not_integer', 'bad_timestamp', 'future_timestamp', 'missing_field'].sort();
    // `meters/x/y/readings` matches no subscription, so the broker never delivers it: nothing to dead-letter.
    expect(await eventually(async () => (await dlqReasons(redis)).length >= expectedReasons.length && ingest !== undefined && ingest.ingestor.totals.messages >= msgs.length - 1, 30_000)).toBe(true);

    const stored = await streamReadings(redis, SHARDS);
    expect(stored.length).toBe(1000);
    expect(new Set(stored.map((r) => `${r.meterId}|${r.ts}`)).size).toBe(1000);
    expect((await dlqReasons(redis)).sort()).toEqual(expectedReasons);
    const totals = ingest.ingestor.totals;
    expect(totals.readings).toBe(1000);
    expect(totals.duplicates).toBe(30 + 50 + 2); // repeated singles, repeated batch, 2 re-sent readings in the mixed array
    expect(totals.rejected).toBe(8);

    await ingest.close();
    ingest = undefined;
    const series = await influx.query('SELECT count(import_wh) FROM reading');
    expect(series[0]?.values[0]?.[1]).toBe(1000);
    const perMeter = await influx.query(`SELECT count(import_wh) FROM reading WHERE meter = 'M-0100'`);
    expect(perMeter[0]?.values[0]?.[1]).toBe(10);
  });

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
    const missing = msgs.map(([, p]) => JSON.parse(p) as { meterId: string; ts: number }).filter((r) => !have.has(`${r.meterId}|${r.ts}`)).map((r) => `${r.meterId}@${(r.ts - T0) / 900_000}`);
    expect(done, `${got}/${total} readings after restart (${atKill} at the kill); missing ${missing.slice(0, 30).join(' ')}; dlq ${(await dlqReasons(redis)).join(',')}; ${child.output()}`).toBe(true);
    expect(atKill).toBeLessThan(total);
    const stored = await streamReadings(redis, SHARDS);
    const ids = new Set(stored.map((r) => `${r.meterId}|${r.ts}`));
    expect(ids.size).toBe(total);
    expect(stored.length).toBe(total);
  }, 240_000);
});
