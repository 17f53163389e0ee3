import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/shared/config.js';
import { ConfigError } from '../../src/shared/errors.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { dlqReasons, eventually, exited, memoryLogger, serviceEnv, spawnRole, streamReadings, type TestServices } from '../helpers/pipeline.js';
import { startInflux, startMosquitto, startRedis } from '../helpers/services.js';

/**
 * Two ingest processes in one `$share` group (MQTT_SHARED_GROUP), one SIGKILLed while readings are being published
 * and restarted under the same MF_INSTANCE: every published reading ends up in the stream shards exactly once.
 *
 * What this relies on, measured against Mosquitto 2.0.11 (docs/scaling.md, "Several ingest instances"): a persistent
 * member's unacknowledged messages stay in its session (they are not handed to the other member, mosquitto#2662),
 * and while it is down the member keeps getting its share of new messages (mosquitto#1747); a client with the same
 * id gets all of them back. The ingest's dedup makes the redelivered copies of what it had appended no-ops.
 */

const SHARDS = 4;
const METERS = 60;
/** 25 h of 15-min reads per meter: inside the ingest's 30 h dedup window, so a redelivery is always recognised. */
const INTERVALS = 100;
/** Meters 48…59 come as one concentrator batch per interval, the others as single-reading messages. */
const SINGLE_METERS = 48;
const Q = 900_000;
const T0 = Math.floor(Date.now() / Q) * Q - (INTERVALS + 4) * Q;

const meterId = (m: number): string => `SG-${String(m).padStart(4, '0')}`;

/** A reading as the simulator shapes it (simulators/engine.ts): ISO time with offset, seq, registers, instantaneous values. */
function reading(m: number, k: number): Record<string, string | number> {
  return {
    meterId: meterId(m),
    ts: new Date(T0 + k * Q).toISOString().replace('.000Z', 'Z'),
    seq: k,
    importWh: 2_000_000 + m * 1000 + k * (120 + (m % 7) * 15),
    exportWh: m % 5 === 0 ? k * 30 : 0,
    powerW: 480 + ((m * 37 + k * 11) % 900),
    voltageV: 229.1 + ((m + k) % 9) / 10,
    currentA: 2.4,
  };
}

/** Every interval: the single-reading messages of meters 0…47, then the concentrator batch of meters 48…59. */
function messages(): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let k = 0; k < INTERVALS; k++) {
    for (let m = 0; m < SINGLE_METERS; m++) out.push([`meters/${meterId(m)}/readings`, JSON.stringify(reading(m, k))]);
    const batch = [];
    for (let m = SINGLE_METERS; m < METERS; m++) batch.push(reading(m, k));
    out.push(['concentrators/SG-C1/readings', JSON.stringify(batch)]);
  }
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('two ingest instances in one shared subscription group', () => {
  let s: TestServices;
  let redis: Redis;
  let influx: Influx;
  let pub: MqttClient;
  let dir: string;
  const children: Array<ReturnType<typeof spawnRole>> = [];

  beforeAll(async () => {
    const [r, m, i] = await Promise.all([startRedis(), startMosquitto(), startInflux()]);
    s = { redis: r, mqtt: m, influx: i };
    redis = new Redis(r.url);
    pub = await mqtt.connectAsync(m.url, { clientId: 'sg-publisher', clean: true });
    dir = mkdtempSync(join(tmpdir(), 'mf-sg-'));
    // Pipeline counters every second, so the test can see each member's share before the kill.
    writeFileSync(join(dir, 'override.yaml'), 'ingest:\n  statsIntervalSeconds: 1\n');
  }, 60_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(children.map(exited));
    await influx?.close();
    await pub?.endAsync();
    redis?.disconnect();
    await Promise.all([s?.redis.destroy(), s?.mqtt.destroy(), s?.influx?.destroy()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to start a group member named after the host (its session would be orphaned by a new name)', () => {
    const run = (env: Record<string, string>): unknown => {
      try {
        return loadConfig({ MQTT_SHARED_GROUP: 'ingest', ...env }).mqtt.clientId;
      } catch (err) {
        return err instanceof ConfigError ? err.variable : err;
      }
    };
    expect(run({})).toBe('MF_INSTANCE');
    expect(run({ MF_INSTANCE: 'ingest-2' })).toBe('meterflow-ingest-2');
    expect(run({ MQTT_CLIENT_ID: 'edge-2' })).toBe('edge-2');
  });

  it('loses nothing and stores nothing twice when one member is SIGKILLed mid-run and restarted', async () => {
    const env = (instance: string): Record<string, string> =>
      serviceEnv(s, {
        STREAM_SHARDS: String(SHARDS),
        MF_INSTANCE: instance,
        MQTT_SHARED_GROUP: 'ingest',
        MF_CONFIG: join(dir, 'override.yaml'),
        LOG_LEVEL: 'info',
      });
    const start = (instance: string): ReturnType<typeof spawnRole> => {
      const child = spawnRole('ingest', env(instance));
      children.push(child);
      return child;
    };
    const started = (child: ReturnType<typeof spawnRole>): Promise<boolean> =>
      eventually(async () => child.output().includes('"ingest started"') || child.exitCode !== null, 60_000, 50).then(() => child.exitCode === null);
    const a = start('sg-a');
    const b = start('sg-b');
    // Both persistent sessions and their shared subscriptions exist before the first publish.
    expect(await started(a), a.output()).toBe(true);
    expect(await started(b), b.output()).toBe(true);
    influx = await createInflux(loadConfig(env('sg-test')).influx, memoryLogger().log);

    /** Readings each member appended, from its own pipeline counters (InfluxDB `pipeline`, tag instance). */
    const appendedBy = async (where = ''): Promise<Record<string, number>> => {
      const series = await influx.query(`SELECT sum(readings) AS n FROM pipeline WHERE role = 'ingest'${where} GROUP BY instance`).catch(() => []);
      return Object.fromEntries(series.map((x) => [x.tags.instance ?? '', Number(x.values[0]?.[1] ?? 0)]));
    };

    const msgs = messages();
    const total = METERS * INTERVALS;
    let published = 0;
    // QoS 1, 50 in flight; after the first third, at most ~500 messages/s, so the kill lands while publishing goes on.
    const publishing = (async () => {
      for (let i = 0; i < msgs.length; i += 50) {
        await Promise.all(msgs.slice(i, i + 50).map(([t, p]) => pub.publishAsync(t, p, { qos: 1 })));
        published = i + 50;
        if (i >= msgs.length / 3) await sleep(100);
      }
      published = msgs.length;
    })();

    // Both members took a share: each one's counters show appended readings.
    const shared = await eventually(
      async () => {
        const by = await appendedBy();
        return (by['sg-a'] ?? 0) > 0 && (by['sg-b'] ?? 0) > 0;
      },
      30_000,
      100,
    );
    expect(shared, `${JSON.stringify(await appendedBy())}\n${a.output()}\n${b.output()}`).toBe(true);
    a.kill('SIGKILL');
    await exited(a);
    const publishedAtKill = published;
    const atKill = (await streamReadings(redis, SHARDS)).length;
    await publishing;
    expect(publishedAtKill, 'the kill must land while readings are still being published').toBeLessThan(msgs.length);

    // B alone drains what it is given; the dead member's session keeps its own share (mosquitto#1747).
    let before = -1;
    let stored = 0;
    await eventually(
      async () => {
        stored = (await streamReadings(redis, SHARDS)).length;
        const stable = stored === before;
        before = stored;
        return stable;
      },
      60_000,
      2_000,
    );
    expect(stored, `stored ${stored} of ${total} before the restart (${atKill} at the kill)`).toBeLessThan(total);

    // The same MF_INSTANCE is the same client id: its session's unacknowledged and queued messages come back to it.
    const restartedAt = Date.now();
    const a2 = start('sg-a');
    const complete = await eventually(async () => (await streamReadings(redis, SHARDS)).length >= total, 60_000, 200);
    await sleep(1000); // a late redelivery would show up as a second copy
    a2.kill('SIGTERM');
    b.kill('SIGTERM');
    await Promise.all([exited(a2), exited(b)]);

    const all = await streamReadings(redis, SHARDS);
    const keys = all.map((r) => `${r.meterId}|${r.ts}`);
    const have = new Set(keys);
    const missing: string[] = [];
    for (let k = 0; k < INTERVALS; k++) for (let m = 0; m < METERS; m++) if (!have.has(`${meterId(m)}|${T0 + k * Q}`)) missing.push(`${meterId(m)}@${k}`);
    expect(complete, `${all.length}/${total}; missing ${missing.slice(0, 20).join(' ')}\n${a2.output()}`).toBe(true);
    expect(missing).toEqual([]);
    expect(all.length).toBe(total);
    expect(have.size).toBe(total);
    expect(await dlqReasons(redis)).toEqual([]);
    // The restarted member appended exactly the share its session had held (its final counters are flushed on SIGTERM).
    const after = await appendedBy(` AND time >= ${restartedAt}ms`);
    expect(after['sg-a']).toBe(total - stored);
    expect(after['sg-b'] ?? 0).toBe(0);
  }, 120_000);
});
