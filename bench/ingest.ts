/**
 * npm run bench:ingest — readings/s from MQTT to Redis Streams through the ingest role (its own process), single
 * and batched, next to the raw broker→subscriber rate for the same payloads in the same run. (The raw `reading`
 * points are the stream worker's to write: npm run bench:stream.)
 */
import { cpus } from 'node:os';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { keys } from '../src/shared/redis.js';
import { startInfluxd, startMosquitto, startRedis } from '../simulators/services.js';
import { progress, report, type BenchRow, roleEnv, spawnRole } from './lib.js';

const SHARDS = 16;
const SINGLE_N = Number(process.env.BENCH_SINGLE ?? 40_000);
const BATCH_N = Number(process.env.BENCH_BATCHED ?? 200_000);
const BATCH = 50;
const METERS = 2000;

type Msg = [topic: string, payload: string, readings: number];

function makeMessages(n: number, batch: number, t0: number): Msg[] {
  const msgs: Msg[] = [];
  const reading = (i: number): { meterId: string; ts: number; importWh: number; exportWh: number; powerW: number; voltageV: number; currentA: number } => {
    const meter = i % METERS;
    const k = Math.floor(i / METERS);
    return {
      meterId: `M-${String(meter).padStart(6, '0')}`,
      ts: t0 + k * 900_000,
      importWh: 5_000_000 + k * 317 + meter,
      exportWh: 0,
      powerW: 1268,
      voltageV: 229.7,
      currentA: 5.52,
    };
  };
  if (batch === 1) {
    for (let i = 0; i < n; i++) {
      const r = reading(i);
      msgs.push([`meters/${r.meterId}/readings`, JSON.stringify(r), 1]);
    }
  } else {
    for (let i = 0; i < n; i += batch) {
      const rs = Array.from({ length: Math.min(batch, n - i) }, (_, j) => reading(i + j));
      msgs.push([`concentrators/C-${i % 97}/readings`, JSON.stringify(rs), rs.length]);
    }
  }
  return msgs;
}

async function publish(client: MqttClient, msgs: Msg[], onProgress: (sent: number) => void): Promise<void> {
  const window = 500;
  for (let i = 0; i < msgs.length; i += window) {
    await Promise.all(msgs.slice(i, i + window).map(([t, p]) => client.publishAsync(t, p, { qos: 1 })));
    onProgress(Math.min(i + window, msgs.length));
  }
}

/** Raw broker rate: a plain QoS 1 subscriber that acknowledges at once. */
async function rawRate(url: string, msgs: Msg[], label: string): Promise<number> {
  const sub = await mqtt.connectAsync(url, { clientId: `raw-${label}`, clean: true });
  await sub.subscribeAsync(['meters/+/readings', 'concentrators/+/readings'], { qos: 1 });
  const pub = await mqtt.connectAsync(url, { clientId: `rawpub-${label}`, clean: true });
  let got = 0;
  const total = msgs.length;
  const readings = msgs.reduce((a, m) => a + m[2], 0);
  const done = new Promise<void>((resolve) => sub.on('message', () => ++got === total && resolve()));
  const t = performance.now();
  await publish(pub, msgs, (s) => progress(`raw ${label}: ${s}/${total} published`));
  await done;
  const secs = (performance.now() - t) / 1000;
  await Promise.all([sub.endAsync(), pub.endAsync()]);
  return readings / secs;
}

async function main(): Promise<void> {
  const [redisSvc, mqttSvc, influxSvc] = await Promise.all([startRedis(), startMosquitto(), startInfluxd()]);
  const redis = new Redis(redisSvc.url);
  const env = roleEnv(
    { redis: redisSvc, mqtt: mqttSvc, influx: influxSvc },
    { STREAM_SHARDS: String(SHARDS), MQTT_CLIENT_ID: 'bench', LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn' },
  );
  const rows: BenchRow[] = [];
  const t0 = Math.floor(Date.now() / 900_000) * 900_000 - 400 * 86_400_000;
  try {
    const cases: Array<[string, Msg[]]> = [
      ['single', makeMessages(SINGLE_N, 1, t0)],
      [`batched x${BATCH}`, makeMessages(BATCH_N, BATCH, t0 + 200 * 86_400_000)],
    ];
    for (const [label, msgs] of cases) {
      const readings = msgs.reduce((a, m) => a + m[2], 0);
      const raw = await rawRate(mqttSvc.url, msgs, label);

      const clientId = `bench-${label.replace(/\W+/g, '-')}`;
      const child = spawnRole('ingest', { ...env, MQTT_CLIENT_ID: clientId });
      const deadline = Date.now() + 60_000;
      while (!String(await redis.client('LIST')).includes('name=meterflow-ingest')) {
        if (Date.now() > deadline) throw new Error(`ingest did not start: ${child.output()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 500)); // subscribed
      const before = await streamEntries(redis);
      const pub = await mqtt.connectAsync(mqttSvc.url, { clientId: `pub-${label}`, clean: true });
      const t = performance.now();
      const publishing = publish(pub, msgs, () => undefined);
      let streamSecs = 0;
      for (;;) {
        const n = (await streamEntries(redis)) - before;
        progress(`ingest ${label}: ${n}/${readings} readings in streams`);
        if (n >= readings) {
          streamSecs = (performance.now() - t) / 1000;
          break;
        }
        if (performance.now() - t > Number(process.env.BENCH_TIMEOUT_MS ?? 600_000)) throw new Error(`timed out: ${n}/${readings} readings; ${child.output()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      await publishing;
      await child.stop();
      await pub.endAsync();
      // Drop the persistent session so later cases' messages are not queued for it.
      await (await mqtt.connectAsync(mqttSvc.url, { clientId: `${clientId}-ingest`, clean: true })).endAsync();
      const toStream = readings / streamSecs;
      rows.push({
        case: label,
        readings,
        'raw broker readings/s': Math.round(raw),
        'ingest→stream readings/s': Math.round(toStream),
        'ratio stream/raw': toStream / raw,
      });
      progress('');
    }
  } finally {
    redis.disconnect();
    await Promise.all([redisSvc.destroy(), mqttSvc.destroy(), influxSvc.destroy()]);
  }
  report('ingest', rows, { cores: cpus().length, shards: SHARDS, batch: BATCH, meters: METERS, node: process.version });
}

/** Readings appended to the streams (the ingest's per-shard counter). */
async function streamEntries(redis: Redis): Promise<number> {
  const p = redis.pipeline();
  for (let s = 0; s < SHARDS; s++) p.hget(keys.shardStats(s), 'appended');
  const res = (await p.exec()) ?? [];
  return res.reduce((a, [, n]) => a + (typeof n === 'string' ? Number(n) : 0), 0);
}

await main();
