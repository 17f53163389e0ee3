/**
 * npm run bench:durability — what the safe durability settings cost: readings/s from MQTT to the Redis Streams
 * through the ingest role (its own process), with
 *   - Redis AOF `appendfsync everysec` (up to 1 s of acknowledged appends lost on a host crash) vs `always`;
 *   - Mosquitto `autosave_interval 30` (up to 30 s of messages acknowledged to publishers lost on a broker crash) vs
 *     saving after every 100 changes (`autosave_on_changes true`, `autosave_interval 100`).
 * Two phases per case: `live` (the ingest running) and `backlog` (the ingest away while as much again is published:
 * the broker queues it for the persistent session, and every save rewrites the whole queue), then the drain.
 * Same messages in every case; compare the ratios to the first row (docs/deployment.md quotes them).
 */
import { cpus } from 'node:os';
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { keys } from '../src/shared/redis.js';
import { startInfluxd, startMosquitto, startRedis } from '../simulators/services.js';
import { progress, report, type BenchRow, roleEnv, spawnRole } from './lib.js';

const SHARDS = 16;
const N = Number(process.env.BENCH_DURABILITY_N ?? 60_000);
const BATCH = 10;
const METERS = 1000;

interface Case {
  label: string;
  appendfsync: 'everysec' | 'always';
  mosquitto: string[];
}

const CASES: Case[] = [
  { label: 'redis everysec, mosquitto autosave 30 s', appendfsync: 'everysec', mosquitto: [] },
  { label: 'redis always, mosquitto autosave 30 s', appendfsync: 'always', mosquitto: [] },
  { label: 'redis everysec, mosquitto every 100 changes', appendfsync: 'everysec', mosquitto: ['autosave_on_changes true', 'autosave_interval 100'] },
  { label: 'redis always, mosquitto every 100 changes', appendfsync: 'always', mosquitto: ['autosave_on_changes true', 'autosave_interval 100'] },
];

function messages(t0: number): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < N; i += BATCH) {
    const rs = Array.from({ length: BATCH }, (_, j) => {
      const n = i + j;
      const meter = n % METERS;
      const k = Math.floor(n / METERS);
      return { meterId: `D-${String(meter).padStart(5, '0')}`, ts: t0 + k * 900_000, importWh: 1_000_000 + k * 300 + meter };
    });
    out.push([`concentrators/C-${i % 31}/readings`, JSON.stringify(rs)]);
  }
  return out;
}

async function appended(redis: Redis): Promise<number> {
  let n = 0;
  for (let s = 0; s < SHARDS; s++) n += Number(await redis.hget(keys.shardStats(s), 'appended'));
  return n;
}

async function run(c: Case, influxUrl: string): Promise<BenchRow> {
  const [redisSvc, mqttSvc] = await Promise.all([startRedis({ persist: true, appendfsync: c.appendfsync }), startMosquitto({ conf: c.mosquitto })]);
  const redis = new Redis(redisSvc.url);
  try {
    const env = roleEnv(
      { redis: redisSvc, mqtt: mqttSvc },
      { INFLUX_URL: influxUrl, STREAM_SHARDS: String(SHARDS), MQTT_CLIENT_ID: 'durability', LOG_LEVEL: 'warn' },
    );
    const startIngest = async (): Promise<ReturnType<typeof spawnRole>> => {
      const child = spawnRole('ingest', env);
      const deadline = Date.now() + 60_000;
      while (!String(await redis.client('LIST')).includes('name=meterflow-ingest')) {
        if (Date.now() > deadline) throw new Error(`ingest did not start: ${child.output()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 500));
      return child;
    };
    const waitAppended = async (n: number): Promise<void> => {
      while ((await appended(redis)) < n) await new Promise((r) => setTimeout(r, 20));
    };
    const t0 = Math.floor(Date.now() / 900_000) * 900_000 - 60 * 86_400_000;
    const pub = await mqtt.connectAsync(mqttSvc.url, { clientId: 'durability-pub', clean: true });
    const publish = async (msgs: Array<[string, string]>, phase: string): Promise<number> => {
      const t = performance.now();
      for (let i = 0; i < msgs.length; i += 500) {
        await Promise.all(msgs.slice(i, i + 500).map(([topic, p]) => pub.publishAsync(topic, p, { qos: 1 })));
        progress(`${c.label} ${phase}: ${Math.min(i + 500, msgs.length)}/${msgs.length} messages acknowledged by the broker`);
      }
      return (performance.now() - t) / 1000;
    };

    let child = await startIngest();
    const t = performance.now();
    const liveAcked = await publish(messages(t0), 'live');
    await waitAppended(N);
    const liveSecs = (performance.now() - t) / 1000;
    await child.stop();

    // The ingest away: the broker queues for its persistent session.
    const backlogAcked = await publish(messages(t0 + 30 * 86_400_000), 'backlog');
    const td = performance.now();
    child = await startIngest();
    await waitAppended(2 * N);
    const drainSecs = (performance.now() - td) / 1000;
    await child.stop();
    await pub.endAsync();
    progress('');
    return {
      case: c.label,
      readings: N,
      'live: broker-acked/s': Math.round(N / liveAcked),
      'live: ingest→stream/s': Math.round(N / liveSecs),
      'backlog: broker-acked/s': Math.round(N / backlogAcked),
      'drain/s': Math.round(N / drainSecs),
    };
  } finally {
    redis.disconnect();
    await Promise.all([redisSvc.destroy(), mqttSvc.destroy()]);
  }
}

async function main(): Promise<void> {
  const influx = await startInfluxd();
  const rows: BenchRow[] = [];
  try {
    for (const c of CASES) rows.push(await run(c, influx.url));
  } finally {
    await influx.destroy();
  }
  const first = rows[0];
  for (const r of rows) {
    for (const k of ['live: ingest→stream/s', 'backlog: broker-acked/s', 'drain/s']) r[`${k.split(':')[0]} ratio`] = Number(r[k]) / Number(first?.[k] ?? 1);
  }
  report('durability', rows, { cores: cpus().length, shards: SHARDS, batch: BATCH, node: process.version });
}

await main();
