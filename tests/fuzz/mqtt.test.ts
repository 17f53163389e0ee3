import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IngestConfig } from '../../src/contracts/config-ingest.js';
import { METER_ID_RE, type RejectReason } from '../../src/contracts/reading.js';
import { loadSection } from '../../src/shared/config.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { keys } from '../../src/shared/redis.js';
import { startStream } from '../../src/stream/main.js';
import { type HostileMessage, hostileMessages, type ValidReading } from '../../simulators/hostile.js';
import { eventually, exited, memoryLogger, roleContext, serviceEnv, spawnRole, streamReadings, type TestServices } from '../helpers/pipeline.js';
import { startInflux, startMosquitto, startRedis } from '../helpers/services.js';

/**
 * Hostile MQTT payloads (simulators/hostile.ts) at the real ingest process, through a real Mosquitto, with good
 * traffic beside and after them. Seeded: FUZZ_SEED replays a run, FUZZ_COUNT sets how many hostile messages.
 */
const SEED = process.env.FUZZ_SEED ?? '20261206';
const COUNT = Number(process.env.FUZZ_COUNT ?? 10_000);
const SHARDS = 4;
const GOOD_METERS = 40;
const GOOD_PER_METER = 25;
/** Good readings published after every hostile one: they must arrive, so the ingest is still acknowledging. */
const AFTER = 100;
/** Ceiling on the ingest's resident memory (payloads are capped at 256 KiB and the broker's in-flight window at 100). */
const MAX_RSS_BYTES = 512 * 1024 * 1024;

const cfg = loadSection('ingest', IngestConfig);
const now = Date.now();
const T0 = Math.floor(now / 900_000) * 900_000 - 12 * 86_400_000;

function rssOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** QoS 1 publishes with at most `window` waiting for their PUBACK. */
async function publishAll(client: MqttClient, msgs: Iterable<{ topic: string; payload: Buffer | string }>, window = 300): Promise<void> {
  let inFlight = 0;
  let failed: unknown;
  let wake: (() => void) | undefined;
  for (const m of msgs) {
    while (inFlight >= window) await new Promise<void>((r) => (wake = r));
    if (failed !== undefined) throw failed;
    inFlight++;
    client.publish(m.topic, m.payload, { qos: 1 }, (err) => {
      if (err) failed = err;
      inFlight--;
      wake?.();
      wake = undefined;
    });
  }
  while (inFlight > 0) await new Promise<void>((r) => (wake = r));
  if (failed !== undefined) throw failed;
}

const goodReading = (m: number, k: number): ValidReading => ({
  meterId: `G-${String(m).padStart(3, '0')}`,
  ts: T0 + k * 900_000,
  importWh: 5_000_000 + m * 1000 + k * 250,
});
const goodMsg = (r: ValidReading) => ({
  topic: `meters/${r.meterId}/readings`,
  payload: JSON.stringify({ ...r, exportWh: 0, powerW: 1000, voltageV: 230.4, currentA: 4.35 }),
});

describe(`ingest under hostile MQTT traffic (FUZZ_SEED=${SEED})`, () => {
  let s: TestServices;
  let redis: Redis;
  let influx: Influx;
  let pub: MqttClient;

  beforeAll(async () => {
    console.log(`mqtt fuzz: FUZZ_SEED=${SEED} FUZZ_COUNT=${COUNT}`);
    const [r, m, i] = await Promise.all([startRedis(), startMosquitto(), startInflux()]);
    s = { redis: r, mqtt: m, influx: i };
    redis = new Redis(r.url);
    pub = await mqtt.connectAsync(m.url, { clientId: 'fuzz-publisher', clean: true });
  });

  afterAll(async () => {
    await pub?.endAsync();
    redis?.disconnect();
    await influx?.close();
    await Promise.all([s?.redis.destroy(), s?.mqtt.destroy(), s?.influx?.destroy()]);
  });

  it(`dead-letters ${COUNT} hostile messages with their reasons, stores every good reading once, never stalls`, async () => {
    const started = Date.now();
    const env = serviceEnv(s, { STREAM_SHARDS: String(SHARDS), MF_INSTANCE: 'fuzz', MQTT_CLIENT_ID: 'fuzz', LOG_LEVEL: 'warn' });
    const { ctx, config } = roleContext(env, memoryLogger().log);
    influx = await createInflux(config.influx, memoryLogger().log);
    const child = spawnRole('ingest', env);

    // Warm-up: a good reading re-sent until it is in the stream (the persistent session exists from then on).
    const warm: ValidReading = { meterId: 'W-1', ts: T0, importWh: 1 };
    const warmed = await eventually(
      async () => {
        await pub.publishAsync(`meters/${warm.meterId}/readings`, JSON.stringify(warm), { qos: 1 });
        return (await streamReadings(redis, SHARDS)).length > 0;
      },
      60_000,
      250,
    );
    expect(warmed, child.output()).toBe(true);
    const rssStart = rssOf(child.pid);
    let rssMax = rssStart;
    const timeline: number[] = [];
    const sampler = setInterval(() => {
      const rss = rssOf(child.pid);
      rssMax = Math.max(rssMax, rss);
      if (timeline.length < 10_000) timeline.push(rss);
    }, 100);

    // Good traffic: 40 meters x 25 quarter-hours. Hostile out-of-range readings take their (meter, ts) first.
    const good: ValidReading[] = [];
    for (let k = 0; k < GOOD_PER_METER; k++) for (let m = 0; m < GOOD_METERS; m++) good.push(goodReading(m, k));
    const hostile: HostileMessage[] = [
      ...hostileMessages({
        seed: SEED,
        count: COUNT,
        nowMs: now,
        maxPayloadBytes: cfg.maxPayloadBytes,
        maxBatch: cfg.maxBatch,
        ranges: cfg.ranges,
        shadow: good.slice(0, good.length - AFTER),
      }),
    ];
    // Interleave: good reading j goes out after hostile message floor(j * COUNT / beside), and after its shadow.
    const beside = good.length - AFTER;
    const shadowIndex = new Map<string, number>();
    hostile.forEach((h, i) => {
      if (h.kind !== 'outOfRange' || !h.topic.startsWith('meters/G-')) return;
      const p: unknown = JSON.parse(h.payload.toString());
      if (p !== null && typeof p === 'object' && 'meterId' in p && 'ts' in p) shadowIndex.set(`${String(p.meterId)}|${String(p.ts)}`, i);
    });
    const schedule: Array<{ topic: string; payload: Buffer | string }> = [];
    let j = 0;
    hostile.forEach((h, i) => {
      schedule.push(h);
      while (j < beside) {
        const g = good[j];
        if (g === undefined) break;
        const due = Math.floor((j * COUNT) / beside);
        const shadow = shadowIndex.get(`${g.meterId}|${g.ts}`) ?? -1;
        if (due > i || shadow > i) break;
        schedule.push(goodMsg(g));
        j++;
      }
    });
    for (; j < good.length; j++) {
      const g = good[j];
      if (g !== undefined) schedule.push(goodMsg(g));
    }
    const shadowed = shadowIndex.size;

    const expectedReasons = new Map<RejectReason, number>();
    for (const h of hostile) for (const r of h.reasons) expectedReasons.set(r, (expectedReasons.get(r) ?? 0) + 1);
    const expectedDlq = [...expectedReasons.values()].reduce((a, n) => a + n, 0);
    const expectedEvents = hostile.reduce((a, h) => a + h.validEvents, 0);
    const expected = new Map<string, number>(); // meter|ts -> importWh
    for (const r of [warm, ...good, ...hostile.flatMap((h) => h.valid)]) expected.set(`${r.meterId}|${r.ts}`, r.importWh);
    const validIds = new Set([...expected.keys()].map((k) => k.slice(0, k.lastIndexOf('|'))));
    const bytes = hostile.reduce((a, h) => a + h.payload.length, 0);

    const publishStart = Date.now();
    await publishAll(pub, schedule);
    const published = Date.now();

    const stored = async () => (await streamReadings(redis, SHARDS)).length;
    const done = await eventually(async () => (await stored()) >= expected.size && (await redis.xlen(keys.dlq)) >= expectedDlq, 120_000, 250);
    clearInterval(sampler);
    const settled = Date.now();
    expect(done, `stored ${await stored()}/${expected.size}, dlq ${await redis.xlen(keys.dlq)}/${expectedDlq}\n${child.output().slice(-3000)}`).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    expect(child.exitCode, 'the ingest exited').toBe(null);
    expect(child.signalCode).toBe(null);

    // Every good (and every valid hostile) reading exactly once, registers untouched.
    const readings = await streamReadings(redis, SHARDS);
    const seen = new Map<string, number>();
    for (const r of readings) seen.set(`${r.meterId}|${r.ts}`, (seen.get(`${r.meterId}|${r.ts}`) ?? 0) + 1);
    expect(readings.length).toBe(expected.size);
    expect([...seen].filter(([, n]) => n !== 1)).toEqual([]);
    const wrong = readings.filter((r) => expected.get(`${r.meterId}|${r.ts}`) !== r.importWh).map((r) => `${r.meterId}@${r.ts}=${r.importWh}`);
    expect(wrong.slice(0, 10)).toEqual([]);

    // No hostile id became a meter: not in the stream, not in a key.
    expect(readings.filter((r) => !validIds.has(r.meterId) || !METER_ID_RE.test(r.meterId)).map((r) => r.meterId)).toEqual([]);
    const allKeys = await redis.keys('*');
    const seenIds = allKeys.filter((k) => k.startsWith('mf:seen:')).map((k) => k.replace(/^mf:seen:\{\d+\}:/, ''));
    expect(seenIds.filter((id) => !validIds.has(id))).toEqual([]);
    expect(allKeys.filter((k) => !/^mf:(seen:\{\d+\}:.+|readings:\{\d+\}|stats:\{\d+\}|dlq)$/.test(k))).toEqual([]);

    // Meter events: only the valid ones appended.
    let events = 0;
    for (let k = 0; k < SHARDS; k++) {
      for (const [, f] of await redis.xrange(keys.readings(k), '-', '+')) {
        const i = f.indexOf('e');
        if (i >= 0) events += (JSON.parse(f[i + 1] ?? '[]') as unknown[]).length;
      }
    }
    expect(events).toBe(expectedEvents);

    // Every hostile input dead-lettered with its reason and a detail.
    const dlq = await redis.xrange(keys.dlq, '-', '+');
    const byReason = new Map<string, number>();
    const noDetail: string[] = [];
    let largest = 0;
    for (const [, f] of dlq) {
      largest = Math.max(
        largest,
        f.reduce((a, v) => a + Buffer.byteLength(v), 0),
      );
      const reason = f[f.indexOf('reason') + 1] ?? '';
      byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
      if ((f[f.indexOf('detail') + 1] ?? '').length < 5) noDetail.push(reason);
    }
    const sorted = (m: Map<string, number>) => Object.fromEntries([...m].sort(([a], [b]) => a.localeCompare(b)));
    expect(sorted(byReason)).toEqual(sorted(expectedReasons));
    expect(noDetail).toEqual([]);
    // Bounded whatever the input: a payload copy of at most dlqPayloadBytes, a topic of at most 256 bytes, a short detail.
    expect(largest).toBeLessThan(cfg.dlqPayloadBytes + 1024);

    // The ingest's own counter by reason (its `dlq` points, the last ones written on SIGTERM) agrees.
    child.kill('SIGTERM');
    await exited(child);
    expect(child.exitCode, child.output().slice(-3000)).toBe(0);
    const counted = new Map<string, number>();
    const counts = await eventually(async () => {
      counted.clear();
      for (const series of await influx.query('SELECT sum("count") FROM dlq GROUP BY reason')) {
        const n = series.values[0]?.[1];
        if (typeof n === 'number' && series.tags?.reason !== undefined) counted.set(series.tags.reason, n);
      }
      return [...counted.values()].reduce((a, n) => a + n, 0) >= expectedDlq;
    }, 10_000);
    expect(counts).toBe(true);
    expect(sorted(counted)).toEqual(sorted(expectedReasons));
    expect(child.output()).not.toMatch(/"level":(50|60)/);

    // Through the stream worker to InfluxDB: no hostile id as a measurement or a tag value.
    const stream = await startStream(ctx);
    try {
      const written = async (): Promise<unknown> => (await influx.query('SELECT count(import_wh) FROM reading'))[0]?.values[0]?.[1];
      expect(await eventually(async () => (await written()) === expected.size, 60_000, 250)).toBe(true);
    } finally {
      await stream.close();
    }
    const measurements = (await influx.query('SHOW MEASUREMENTS')).flatMap((sr) => sr.values.map((v) => String(v[0])));
    expect(measurements.filter((m) => !/^[a-z_]+$/.test(m))).toEqual([]);
    const tagValues = (await influx.query('SHOW TAG VALUES FROM reading WITH KEY = meter')).flatMap((sr) => sr.values.map((v) => String(v[1])));
    expect(tagValues.filter((v) => !validIds.has(v))).toEqual([]);
    expect(new Set(tagValues)).toEqual(validIds);

    const kinds = new Map<string, { n: number; reasons: Map<string, number>; valid: number }>();
    for (const h of hostile) {
      const k = kinds.get(h.kind) ?? { n: 0, reasons: new Map(), valid: 0 };
      k.n++;
      k.valid += h.valid.length + h.validEvents;
      for (const r of h.reasons) k.reasons.set(r, (k.reasons.get(r) ?? 0) + 1);
      kinds.set(h.kind, k);
    }
    const table = [...kinds]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(
        ([kind, k]) =>
          `  ${kind.padEnd(14)} ${String(k.n).padStart(5)}  valid ${String(k.valid).padStart(5)}  ${[...k.reasons].map(([r, n]) => `${r}=${n}`).join(' ')}`,
      );
    console.log(
      [
        `mqtt fuzz (FUZZ_SEED=${SEED}): ${hostile.length} hostile messages (${(bytes / 1e6).toFixed(1)} MB), ${good.length} good readings beside/after ` +
          `(${shadowed} shadowed by an out-of-range reading of the same meter and time), ${expectedDlq} dead letters, ${expected.size} readings stored`,
        `  publish ${((published - publishStart) / 1000).toFixed(1)} s, settle ${((settled - published) / 1000).toFixed(1)} s, ` +
          `ingest RSS ${(rssStart / 2 ** 20).toFixed(0)} -> max ${(rssMax / 2 ** 20).toFixed(0)} MiB, total ${((Date.now() - started) / 1000).toFixed(1)} s`,
        `  ingest RSS per second (MiB): ${timeline
          .filter((_, i) => i % 10 === 0)
          .map((b) => (b / 2 ** 20).toFixed(0))
          .join(' ')}`,
        ...table,
      ].join('\n'),
    );
    expect(rssMax).toBeLessThan(MAX_RSS_BYTES);
    expect(shadowed).toBeGreaterThan(100);
  }, 170_000);
});
