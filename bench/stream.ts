/**
 * npm run bench:stream — readings/s through the stream worker for a backfilled fleet, and state bytes per meter.
 *
 *   tsx bench/stream.ts [--meters 10000] [--days 1] [--shards 16] [--workers 1]
 *
 * Starts a private redis-server and influxd (throw-away dirs, free ports), appends the fleet's history to the
 * stream shards the way the ingest does (one entry per shard per quarter hour), then measures
 *   1. the domain alone (parse + VEE + baselines + detectors + line building, no I/O), one core;
 *   2. the whole worker: XREADGROUP → process → InfluxDB + BullMQ + load aggregation → MULTI checkpoint.
 * Prints a table and writes bench/results/stream-<timestamp>.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { DetectionConfig } from '../src/contracts/config-detection.js';
import { compileSettings } from '../src/domain/stream-settings.js';
import { loadConfig, loadSection } from '../src/shared/config.js';
import { createLogger } from '../src/shared/logger.js';
import { createMetrics } from '../src/shared/metrics.js';
import { closeRedis, createRedis, keys } from '../src/shared/redis.js';
import { startInfluxd, startRedis } from '../simulators/services.js';
import { parseEntry } from '../src/stream/entries.js';
import { streamKeys } from '../src/stream/keys.js';
import { startStream } from '../src/stream/main.js';
import { ShardWork, type MeterRecord } from '../src/stream/shard-work.js';
import { buildFleet, feedEntries, fleetEntries, loadRegistry } from '../simulators/stream-fleet.js';

const { values: args } = parseArgs({
  options: {
    meters: { type: 'string', default: '10000' },
    days: { type: 'string', default: '1' },
    shards: { type: 'string', default: '16' },
    workers: { type: 'string', default: '1' },
  },
});
const meters = Number(args.meters);
const days = Number(args.days);
const shards = Number(args.shards);
const workers = Number(args.workers);
const REPO = fileURLToPath(new URL('../', import.meta.url));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  console.log(`stream bench: ${meters} meters, ${days} day(s) of 15-min history, ${shards} shards, ${workers} worker(s), ${cpus().length} cores`);
  const fleet = buildFleet({ meters, quarters: Math.round(days * 96), anomalies: false });
  const readings = fleet.items.length;
  const entries = fleetEntries(fleet, shards);
  const records = new Map<string, MeterRecord>(fleet.customers.map((c) => [c.meterId, c]));

  const meterOf = (id: string): MeterRecord => {
    const rec = records.get(id);
    if (rec === undefined) throw new Error(`meter ${id} is not in the bench fleet`);
    return rec;
  };

  // 1. Domain only: the same entries through ShardWork, no I/O.
  const det = loadSection('detection', DetectionConfig);
  const settings = compileSettings(det, 'UTC');
  const parsed = entries.map((e, i) => ({ shard: e.shard, entry: parseEntry(`${i + 1}-0`, e.fields) }));
  const works = new Map<number, ShardWork>();
  let lines = 0;
  const d0 = performance.now();
  for (const { shard, entry } of parsed) {
    let w = works.get(shard);
    if (w === undefined) {
      w = new ShardWork(shard, {
        settings,
        watermarkLatenessMs: det.watermark.latenessMinutes * 60_000,
        maxFutureMs: 600_000,
        aggMs: 900_000,
        band: () => 'flat',
        dayZone: () => settings.zone,
      });
      works.set(shard, w);
    }
    lines += w.process([entry], meterOf).lines.length;
  }
  const domainSec = (performance.now() - d0) / 1000;
  works.clear();

  // 2. The whole worker against real Redis, InfluxDB 1.x and BullMQ.
  const redisSvc = await startRedis();
  const influxSvc = await startInfluxd();
  const redis = createRedis(redisSvc.url, 'bench');
  let result: Record<string, unknown> = {};
  try {
    await loadRegistry(redis, fleet);
    const f0 = performance.now();
    await feedEntries(redis, entries);
    const feedSec = (performance.now() - f0) / 1000;
    const env = {
      REDIS_URL: redisSvc.url,
      INFLUX_URL: influxSvc.url,
      INFLUX_API: 'v1',
      INFLUX_BUCKET: 'bench',
      STREAM_SHARDS: String(shards),
      MF_TIMEZONE: 'UTC',
      LOG_LEVEL: 'warn',
      MF_INSTANCE: 'bench',
    };
    const backlog = async (): Promise<number> => {
      let n = 0;
      for (let s = 0; s < shards; s++) n += await redis.xlen(keys.readings(s));
      return n;
    };
    const w0 = performance.now();
    const closers: Array<() => Promise<void>> = [];
    if (workers === 1) {
      const h = await startStream({
        config: loadConfig({ ...env, WORKER_INDEX: '0', WORKER_COUNT: '1' }),
        log: createLogger({ level: 'warn' }),
        metrics: createMetrics(),
      });
      closers.push(() => h.close());
    } else {
      for (let i = 0; i < workers; i++) {
        const child = spawn(process.execPath, ['bin/meterflow.js', 'stream'], {
          cwd: REPO,
          stdio: ['ignore', 'inherit', 'inherit'],
          env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env, WORKER_INDEX: String(i), WORKER_COUNT: String(workers) },
        });
        closers.push(async () => {
          child.kill('SIGTERM');
          await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
        });
      }
    }
    let last = Date.now();
    for (;;) {
      await sleep(250);
      const left = await backlog();
      if (left === 0) break;
      if (Date.now() - last > 10_000) {
        last = Date.now();
        console.log(`  … ${fmt(left)} entries left, ${((performance.now() - w0) / 1000).toFixed(0)} s`);
      }
    }
    const workerSec = (performance.now() - w0) / 1000;
    for (const c of closers) await c();

    const sizes: number[] = [];
    for (let s = 0; s < shards; s++) {
      for (const v of Object.values(await redis.hgetall(streamKeys.state(s)))) sizes.push(Buffer.byteLength(v));
    }
    sizes.sort((a, b) => a - b);
    const mean = sizes.reduce((a, b) => a + b, 0) / Math.max(1, sizes.length);
    const p99 = sizes[Math.floor(sizes.length * 0.99)] ?? 0;
    const max = sizes.at(-1) ?? 0;
    const redisMem = /used_memory:(\d+)/.exec(await redis.info('memory'))?.[1];

    const rows: Array<[string, string]> = [
      ['readings', fmt(readings)],
      ['stream entries', fmt(entries.length)],
      ['domain only (1 core): readings/s', fmt(readings / domainSec)],
      ['domain only: InfluxDB lines built', fmt(lines)],
      ['XADD backfill into Redis: readings/s', fmt(readings / feedSec)],
      ['whole worker: readings/s', fmt(readings / workerSec)],
      ['whole worker: seconds', workerSec.toFixed(1)],
      ['state bytes per meter (mean)', fmt(mean)],
      ['state bytes per meter (p99 / max)', `${fmt(p99)} / ${fmt(max)}`],
      ['meters with state', fmt(sizes.length)],
      ['redis used_memory after run (MiB)', redisMem === undefined ? '?' : (Number(redisMem) / 2 ** 20).toFixed(1)],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    console.log('');
    for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v.padStart(14)}`);
    result = {
      bench: 'stream',
      at: new Date().toISOString(),
      cores: cpus().length,
      node: process.version,
      meters,
      days,
      shards,
      workers,
      readings,
      entries: entries.length,
      domainReadingsPerSec: Math.round(readings / domainSec),
      influxLines: lines,
      feedReadingsPerSec: Math.round(readings / feedSec),
      workerReadingsPerSec: Math.round(readings / workerSec),
      workerSeconds: Number(workerSec.toFixed(2)),
      stateBytesPerMeter: { mean: Math.round(mean), p99, max, meters: sizes.length },
      redisUsedMemoryBytes: redisMem === undefined ? null : Number(redisMem),
      baselineSlots: det.baseline.slots,
    };
  } finally {
    await closeRedis(redis);
    await redisSvc.destroy();
    await influxSvc.destroy();
  }
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}stream-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nwritten ${file}`);
}

await main();
