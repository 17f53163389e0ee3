/**
 * npm run bench:pipeline — the whole pipeline measured in one run, next to the raw limits of its services:
 *
 *   raw      broker → plain QoS 1 subscriber (its own process) msgs/s for the same payloads; Redis XADD entries/s
 *            (plain pipelined XADD of the entries the ingest writes); InfluxDB points/s (`reading` + `interval`
 *            lines through src/shared/influx.ts, batches of 5000, influxd 1.x)
 *   e2e      every role as its own process (ingest, stream, alerts, billing, api) on private redis / mosquitto /
 *            influxd: readings/s from the first publish until every reading is appended and the stream shards are
 *            drained, for 100-reading concentrator batches and single-reading messages
 *   latency  a steady 5,000 readings/s (100-reading batches every 20 ms); ~5 meters a second send a read whose
 *            import register is lower than the previous one: publish → `registerReset` detection event (BullMQ job
 *            enqueued) and → alert (the alert service finished the job, alert opened), p50 / p99
 *   state    the stream worker alone at 100,000 meters after 1 day of reads appended to the shards: encoded meter
 *            state bytes per meter as checkpointed in Redis, the worker's readings/s and RSS
 *   replay   30 days × 10,000 meters through every role (100-reading batches, as fast as the pipeline takes them)
 *
 *   tsx bench/pipeline.ts [--quick] [--skip raw,e2e,latency,state,replay] [--replay-max-s 2700] …
 *   tsx bench/pipeline.ts --scaling [--quick] [--scaling-meters 1000,10000,100000] [--scaling-days 1]
 *
 * Prints tables and writes bench/results/pipeline-<timestamp>.json (or scaling-…json, the measured section of
 * docs/scaling.md between its bench:scaling markers, and docs/scaling.svg).
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { quantile } from 'simple-statistics';
import { DetectionConfig } from '../src/contracts/config-detection.js';
import { RegistryConfig } from '../src/contracts/config-registry.js';
import type { Reading } from '../src/contracts/reading.js';
import { alertKeys, keyField } from '../src/alerting/keys.js';
import { loadSection } from '../src/shared/config.js';
import { createInflux } from '../src/shared/influx.js';
import { escTag, readingLine } from '../src/shared/line-protocol.js';
import { createLogger } from '../src/shared/logger.js';
import { keys, queuePrefix, shardOf } from '../src/shared/redis.js';
import { RegistryStore } from '../src/shared/registry.js';
import { freePort, startInfluxd, startMosquitto, startRedis, type LocalService } from '../simulators/services.js';
import { cpuMicrosPerReading, pidByCommandLine, processCpuSeconds, redisCpuSeconds } from './cpu.js';
import { writeGeneratedSection } from './scaling-doc.js';
import {
  Fleet,
  fleetMessages,
  fmtDuration,
  fmtInt,
  machineContext,
  progress,
  publishAll,
  QUARTER_MS,
  roleEnv,
  sleep,
  spawnRole,
  table,
  writeResult,
  type BenchRow,
  type Msg,
  type RoleProcess,
} from './lib.js';

const { values: a } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    scaling: { type: 'boolean', default: false },
    skip: { type: 'string', default: '' },
    meters: { type: 'string' },
    shards: { type: 'string', default: '16' },
    window: { type: 'string', default: '500' },
    'flow-readings': { type: 'string', default: '200000' },
    'batched-quarters': { type: 'string' },
    'single-quarters': { type: 'string' },
    'steady-s': { type: 'string' },
    'steady-rate': { type: 'string', default: '5000' },
    'probes-per-s': { type: 'string', default: '5' },
    'raw-readings': { type: 'string' },
    'state-meters': { type: 'string' },
    'state-days': { type: 'string', default: '1' },
    'replay-days': { type: 'string' },
    'replay-meters': { type: 'string' },
    'replay-max-s': { type: 'string', default: '2700' },
    'scaling-meters': { type: 'string' },
    'scaling-days': { type: 'string' },
    'redis-fsync': { type: 'string', default: 'always' },
    /** Rewrite docs/scaling.md and docs/scaling.svg from a saved bench/results/scaling-*.json (no run). */
    'docs-from': { type: 'string' },
    /** Where scaling.md (its measured section) and scaling.svg are written; default docs/. */
    'docs-dir': { type: 'string' },
    // internal: the raw subscriber's own process
    'raw-subscriber': { type: 'string' },
    expect: { type: 'string' },
  },
});

const quick = a.quick === true;
const num = (v: string | undefined, full: number, q: number): number => (v !== undefined ? Number(v) : quick ? q : full);
const SHARDS = Number(a.shards);
const WINDOW = Number(a.window);
const FLOW_READINGS = Number(a['flow-readings']);
const METERS = num(a.meters, 10_000, 2_000);
const BATCHED_Q = num(a['batched-quarters'], 97, 24);
const SINGLE_Q = num(a['single-quarters'], 20, 10);
const STEADY_S = num(a['steady-s'], 60, 20);
const STEADY_RATE = Number(a['steady-rate']);
const PROBES_PER_S = Number(a['probes-per-s']);
const RAW_READINGS = num(a['raw-readings'], 500_000, 50_000);
const STATE_METERS = num(a['state-meters'], 100_000, 5_000);
const STATE_DAYS = Number(a['state-days']);
const REPLAY_DAYS = num(a['replay-days'], 30, 2);
const REPLAY_METERS = num(a['replay-meters'], 10_000, 1_000);
const REPLAY_MAX_S = Number(a['replay-max-s']);
const FSYNC = a['redis-fsync'] as 'always' | 'everysec' | 'no';
const SKIP = new Set(
  (a.skip ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);
const DAY_MS = 86_400_000;

const det = loadSection('detection', DetectionConfig);
const LATENESS_MS = det.watermark.latenessMinutes * 60_000;
const log = createLogger({ level: 'warn' });

// --- services and roles ------------------------------------------------------------------------------------------

interface Services {
  redis: LocalService;
  mqtt: LocalService;
  influx: LocalService;
}

/**
 * As deployed (docker-compose.yml, deploy/mosquitto): Redis AOF with appendfsync always (--redis-fsync), Mosquitto
 * with max_inflight_messages 1000 (the ingest's backpressure window), persistence and autosave 30 s.
 */
async function startServices(): Promise<Services> {
  const [redis, mqttSvc, influx] = await Promise.all([
    startRedis(FSYNC === 'no' ? {} : { persist: true, appendfsync: FSYNC }),
    startMosquitto({ conf: ['max_inflight_messages 1000'] }),
    startInfluxd(),
  ]);
  return { redis, mqtt: mqttSvc, influx };
}

async function stopServices(s: Services): Promise<void> {
  await Promise.all([s.redis.destroy(), s.mqtt.destroy(), s.influx.destroy()]);
}

const ROLES = ['ingest', 'stream', 'alerts', 'billing', 'api'] as const;

interface PhaseResult {
  label: string;
  readings: number;
  messages: number;
  seconds: number;
  readingsPerS: number;
  /** Seconds the publisher took to get every PUBACK (the broker's side). */
  publishSeconds: number;
  appended: number;
  complete: boolean;
  rejected: Record<string, number>;
}

/** One set of private services with every role running as its own process, and the bench's view of its Redis. */
class Pipeline {
  readonly redis: Redis;
  readonly roles = new Map<string, RoleProcess>();
  private dlqCursor = '0-0';

  private constructor(
    readonly svc: Services,
    readonly label: string,
  ) {
    this.redis = new Redis(svc.redis.url, { connectionName: 'bench' });
  }

  static async start(label: string): Promise<Pipeline> {
    return new Pipeline(await startServices(), label);
  }

  async register(fleet: Fleet): Promise<void> {
    const store = new RegistryStore(this.redis, loadSection('registry', RegistryConfig).defaults);
    const { customers, transformers } = fleet.registry();
    await store.upsertMeters(customers);
    for (let i = 0; i < transformers.length; i += 1000) await store.upsertTransformers(transformers.slice(i, i + 1000));
  }

  async startRoles(roles: readonly string[] = ROLES): Promise<void> {
    const apiPort = await freePort();
    const env = roleEnv(this.svc, {
      STREAM_SHARDS: String(SHARDS),
      LOG_LEVEL: 'info',
      INFLUX_API: 'v1',
      MF_INSTANCE: `bench-${this.label}`,
      MQTT_CLIENT_ID: `bench-${this.label}`,
      API_PORT: String(apiPort),
      API_TOKENS: JSON.stringify({ 'bench-admin-token': ['admin'] }),
    });
    for (const role of roles) this.roles.set(role, spawnRole(role, env));
    await Promise.all([...this.roles.values()].map((r) => r.ready(120_000)));
  }

  async stopRoles(): Promise<void> {
    await Promise.all([...this.roles.values()].map((r) => r.stop()));
    this.roles.clear();
  }

  async close(): Promise<void> {
    await this.stopRoles();
    this.redis.disconnect();
    await stopServices(this.svc);
  }

  roleOutputs(): string {
    return [...this.roles.values()].map((r) => `--- ${r.role} ---\n${r.output().slice(-2500)}`).join('\n');
  }

  /** Readings appended by the ingest (its per-shard counters). */
  async appended(): Promise<number> {
    const p = this.redis.pipeline();
    for (let s = 0; s < SHARDS; s++) p.hget(keys.shardStats(s), 'appended');
    const res = (await p.exec()) ?? [];
    return res.reduce((acc, [, n]) => acc + (typeof n === 'string' ? Number(n) : 0), 0);
  }

  /** Entries still in the stream shards (the stream worker deletes each entry once checkpointed). */
  async backlog(): Promise<number> {
    const p = this.redis.pipeline();
    for (let s = 0; s < SHARDS; s++) p.xlen(keys.readings(s));
    const res = (await p.exec()) ?? [];
    return res.reduce((acc, [, n]) => acc + (typeof n === 'number' ? n : 0), 0);
  }

  /** Slowest shard's event-time watermark (−∞ before every shard has one). */
  async watermark(): Promise<number> {
    const raw = await this.redis.hgetall(keys.watermark);
    const vals = Array.from({ length: SHARDS }, (_, s) => Number(raw[String(s)] ?? NaN));
    return vals.some((v) => !Number.isFinite(v)) ? -Infinity : Math.min(...vals);
  }

  /** Dead letters written since the last call, by source (`ingest…` / `stream`) and reason. */
  async newDeadLetters(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (;;) {
      const entries = await this.redis.xrange(keys.dlq, `(${this.dlqCursor}`, '+', 'COUNT', 1000);
      if (entries.length === 0) return out;
      for (const [id, f] of entries) {
        this.dlqCursor = id;
        const get = (k: string): string => f[f.indexOf(k) + 1] ?? '?';
        const src = get('source').split(':')[0] ?? '?';
        const k = `${src}:${get('reason')}`;
        out[k] = (out[k] ?? 0) + 1;
      }
    }
  }

  async usedMemory(): Promise<number> {
    return Number(/used_memory:(\d+)/.exec(await this.redis.info('memory'))?.[1] ?? NaN);
  }

  /** Encoded meter states as the stream worker checkpointed them (`mf:state:{N}`, src/stream/keys.ts). */
  async stateSizes(): Promise<{ mean: number; p99: number; max: number; meters: number; redisBytes: number }> {
    const sizes: number[] = [];
    let redisBytes = 0;
    for (let s = 0; s < SHARDS; s++) {
      const key = `mf:state:{${s}}`;
      let cursor = '0';
      do {
        const [next, kv] = await this.redis.hscan(key, cursor, 'COUNT', 2000);
        cursor = next;
        for (let i = 1; i < kv.length; i += 2) sizes.push(Buffer.byteLength(kv[i] ?? ''));
      } while (cursor !== '0');
      redisBytes += Number(await this.redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) || 0;
    }
    sizes.sort((x, y) => x - y);
    const mean = sizes.reduce((x, y) => x + y, 0) / Math.max(1, sizes.length);
    return { mean: Math.round(mean), p99: sizes[Math.floor(sizes.length * 0.99)] ?? 0, max: sizes.at(-1) ?? 0, meters: sizes.length, redisBytes };
  }

  /**
   * Publishes `msgs` (QoS 1, a window of in-flight publishes) and waits until every reading is appended by the
   * ingest and the stream shards are empty. Unless paced, a flow control keeps the publisher at most
   * --flow-readings (default 200,000) readings of event time ahead of the slowest shard's watermark, so the
   * broker queue stays bounded and every stage always has work.
   */
  async runPhase(
    label: string,
    msgs: Iterable<Msg>,
    expect: { readings: number; messages: number; from: number; perQuarter: number },
    o: {
      everyMs?: number;
      onSend?: (m: Msg, at: number) => void;
      maxSeconds?: number;
      onWatermark?: (wm: number, elapsedS: number) => void;
    } = {},
  ): Promise<PhaseResult> {
    await this.newDeadLetters();
    const before = await this.appended();
    const pub = await mqtt.connectAsync(this.svc.mqtt.url, { clientId: `bench-pub-${this.label}-${label.replace(/\W+/g, '-')}`, clean: true });
    const aheadMs = Math.max(2, Math.ceil(FLOW_READINGS / expect.perQuarter)) * QUARTER_MS + LATENESS_MS;
    let allowedTs = expect.from + aheadMs;
    let wm = -Infinity;
    let stopped = false;
    const t0 = performance.now();
    const elapsed = (): number => (performance.now() - t0) / 1000;
    let sent = 0;
    let sentReadings = 0;
    const gate =
      o.everyMs !== undefined
        ? undefined
        : (m: Msg): Promise<void> | undefined => {
            if (m.ts <= allowedTs) return undefined;
            return (async () => {
              while (m.ts > allowedTs) {
                await sleep(25);
                wm = await this.watermark();
                allowedTs = Math.max(allowedTs, wm + aheadMs);
              }
            })();
          };
    const publishing = publishAll(pub, msgs, {
      window: WINDOW,
      gate,
      everyMs: o.everyMs,
      onSend: (m, at) => {
        sent++;
        sentReadings += m.readings;
        o.onSend?.(m, at);
      },
      stop: () => {
        if (o.maxSeconds !== undefined && elapsed() > o.maxSeconds) stopped = true;
        return stopped;
      },
    });
    let published: Awaited<typeof publishing> | undefined;
    let failed: unknown;
    publishing.then(
      (r) => (published = r),
      (err: unknown) => (failed = err),
    );

    let lastPrint = 0;
    let lastChange = performance.now();
    let lastSeen = -1;
    let appended = 0;
    let tEnd = 0;
    for (;;) {
      await sleep(100);
      if (failed !== undefined) throw failed;
      appended = (await this.appended()) - before;
      const backlog = await this.backlog();
      wm = await this.watermark();
      o.onWatermark?.(wm, elapsed());
      if (appended + backlog !== lastSeen) {
        lastSeen = appended + backlog;
        lastChange = performance.now();
      }
      const target = published?.readings ?? expect.readings;
      if (published !== undefined && appended >= target && backlog === 0) {
        tEnd = performance.now();
        break;
      }
      if (published !== undefined && backlog === 0 && performance.now() - lastChange > 30_000) {
        tEnd = lastChange;
        progress('');
        process.stdout.write(`  ${label}: ${fmtInt(target - appended)} of ${fmtInt(target)} readings never reached the streams (see rejected)\n`);
        break;
      }
      if (performance.now() - lastChange > 180_000)
        throw new Error(`${label}: no progress for 180 s (appended ${appended}, backlog ${backlog})\n${this.roleOutputs()}`);
      if (elapsed() - lastPrint >= 10) {
        lastPrint = elapsed();
        const doneQ = Number.isFinite(wm) ? Math.max(0, (wm + LATENESS_MS - expect.from) / QUARTER_MS + 1) : 0;
        const processed = Math.min(expect.readings, doneQ * expect.perQuarter);
        const rate = processed / elapsed();
        const eta = rate > 0 ? (expect.readings - processed) / rate : NaN;
        progress(
          `  ${label}: ${elapsed().toFixed(0)} s, published ${fmtInt(sentReadings)}, appended ${fmtInt(appended)}, stream backlog ${fmtInt(backlog)} entries, ` +
            `processed ≈ ${fmtInt(processed)} (${fmtInt(rate)}/s)${stopped ? ' [time cap: publishing stopped]' : `, ETA ${fmtDuration(eta)}`}`,
        );
      }
    }
    await pub.endAsync();
    progress('');
    const seconds = (tEnd - (published?.firstSendAt ?? t0)) / 1000;
    const rejected = await this.newDeadLetters();
    return {
      label,
      readings: published?.readings ?? 0,
      messages: published?.messages ?? sent,
      seconds,
      readingsPerS: appended / seconds,
      publishSeconds: published ? (published.lastAckAt - published.firstSendAt) / 1000 : NaN,
      appended,
      complete: appended >= (published?.readings ?? expect.readings) && !stopped,
      rejected,
    };
  }

  /**
   * Redis memory by key family (`mf:seen`, `mf:state`, `mf:{events}` (a BullMQ queue), …): keys counted with SCAN, MEMORY USAGE summed
   * over up to 300 keys per family and scaled to the family's count. Bytes per meter.
   */
  async memoryByFamily(meters: number): Promise<Record<string, number>> {
    const fams = new Map<string, { n: number; sample: string[] }>();
    let cursor = '0';
    do {
      const [next, ks] = await this.redis.scan(cursor, 'COUNT', 5000);
      cursor = next;
      for (const k of ks) {
        // BullMQ keys: `mf:{<queue>}:<queue>:…` (queuePrefix).
        const fam = /^mf:\{[^}]+\}:/.test(k)
          ? k.slice(0, k.indexOf('}') + 1) +
            (/^mf:\{[^}]+\}:[^:]+:(wait|active|completed|failed|delayed|events|meta|id|stalled-check|marker|paused|prioritized|repeat|limiter|pc)$/.test(k)
              ? ' (lists)'
              : ' (jobs)')
          : k
              .replace(/\{[^}]*\}/g, '{N}')
              .split(':')
              .slice(0, 2)
              .join(':');
        let f = fams.get(fam);
        if (f === undefined) {
          f = { n: 0, sample: [] };
          fams.set(fam, f);
        }
        f.n++;
        if (f.sample.length < 300) f.sample.push(k);
      }
    } while (cursor !== '0');
    const out: Record<string, number> = {};
    this.encodings = {};
    for (const [fam, f] of fams) {
      let bytes = 0;
      for (const k of f.sample) {
        bytes += Number(await this.redis.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')) || 0;
        if (fam === 'mf:seen') {
          const enc = String(await this.redis.object('ENCODING', k));
          this.encodings[enc] = (this.encodings[enc] ?? 0) + 1;
        }
      }
      out[`${fam} [${f.n} keys]`] = Math.round(((bytes / f.sample.length) * f.n) / meters);
    }
    return Object.fromEntries(Object.entries(out).sort((x, y) => y[1] - x[1]));
  }

  /** OBJECT ENCODING of the sampled dedup sets (listpack ~2.6 KB for a 15-min meter; skiplist several times that). */
  encodings: Record<string, number> = {};

  /** Stream worker RSS, Redis memory and state sizes, per meter. */
  async footprint(meters: number): Promise<Record<string, number>> {
    const mem = this.roles.get('stream')?.memory();
    const used = await this.usedMemory();
    const st = await this.stateSizes();
    const fams = await this.memoryByFamily(meters);
    process.stdout.write(
      `  Redis bytes per meter by key family (used_memory ${fmtInt(used / meters)} B/meter): ${Object.entries(fams)
        .slice(0, 8)
        .map(([k, v]) => `${k} ${fmtInt(v)}`)
        .join(', ')}\n`,
    );
    process.stdout.write(
      `  dedup sets (mf:seen) sampled by encoding: ${
        Object.entries(this.encodings)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') || '-'
      }\n`,
    );
    const seen = Object.entries(fams).find(([k]) => k.startsWith('mf:seen '))?.[1];
    return {
      redis_seen_bytes_per_meter: seen ?? NaN,
      redis_seen_skiplist_share:
        Math.round(
          ((this.encodings.skiplist ?? 0) /
            Math.max(
              1,
              Object.values(this.encodings).reduce((x, y) => x + y, 0),
            )) *
            100,
        ) / 100,
      stream_rss_mib: mem ? Math.round(mem.rssKiB / 102.4) / 10 : NaN,
      stream_peak_rss_mib: mem ? Math.round(mem.hwmKiB / 102.4) / 10 : NaN,
      stream_rss_bytes_per_meter: mem ? Math.round((mem.rssKiB * 1024) / meters) : NaN,
      redis_used_memory_mib: Math.round(used / 104857.6) / 10,
      redis_used_memory_bytes_per_meter: Math.round(used / meters),
      redis_state_hash_bytes_per_meter: Math.round(st.redisBytes / Math.max(1, st.meters)),
      state_bytes_per_meter: st.mean,
      state_bytes_per_meter_p99: st.p99,
      state_bytes_per_meter_max: st.max,
      meters_with_state: st.meters,
    };
  }
}

/** `to` is the newest quarter in the past; `quarters` quarters back from it. */
function window(quarters: number, endBefore = Date.now()): { from: number; to: number } {
  const to = Math.floor(endBefore / QUARTER_MS) * QUARTER_MS - QUARTER_MS;
  return { from: to - (quarters - 1) * QUARTER_MS, to };
}

// --- raw limits -------------------------------------------------------------------------------------------------

/** The raw subscriber (its own process, as the ingest is): counts QoS 1 messages, MQTT.js acknowledges each at once. */
async function rawSubscriber(url: string, expect: number): Promise<void> {
  const sub = await mqtt.connectAsync(url, { clientId: `raw-sub-${process.pid}`, clean: true });
  await sub.subscribeAsync(['meters/+/readings', 'concentrators/+/readings'], { qos: 1 });
  let got = 0;
  let first = 0;
  sub.on('message', () => {
    if (got === 0) first = Date.now();
    if (++got === expect) {
      process.stdout.write(`done ${first} ${Date.now()}\n`);
      void sub.endAsync().then(() => process.exit(0));
    }
  });
  process.stdout.write('ready\n');
}

async function rawMqtt(
  url: string,
  label: string,
  msgs: () => Iterable<Msg>,
  count: { messages: number; readings: number },
): Promise<{ msgsPerS: number; readingsPerS: number; seconds: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--raw-subscriber', url, '--expect', String(count.messages)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  const until = async (re: RegExp, ms: number): Promise<RegExpExecArray> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(out);
      if (m) return m;
      if (child.exitCode !== null) throw new Error(`raw subscriber exited: ${out}`);
      if (Date.now() > deadline) throw new Error(`raw subscriber: timed out waiting for ${re}`);
      await sleep(20);
    }
  };
  await until(/ready/, 30_000);
  const pub = await mqtt.connectAsync(url, { clientId: `raw-pub-${label}`, clean: true });
  const start = Date.now();
  await publishAll(pub, msgs(), { window: WINDOW });
  const m = await until(/done (\d+) (\d+)/, 600_000);
  await pub.endAsync();
  const seconds = (Number(m[2]) - start) / 1000;
  return { msgsPerS: count.messages / seconds, readingsPerS: count.readings / seconds, seconds };
}

/** The ingest's entry for readings (fields r and rx; readings JSON as the ingest stores them: ts in epoch ms). */
const entryJson = (rs: Reading[]): string => `[${rs.map((r) => JSON.stringify(r)).join(',')}]`;

async function rawXadd(redis: Redis, entries: Iterable<string>): Promise<{ entries: number; entriesPerS: number; seconds: number }> {
  const PIPE = 1000;
  const inFlight: Array<Promise<unknown>> = [];
  let p = redis.pipeline();
  let n = 0;
  const t = performance.now();
  for (const r of entries) {
    p.xadd(`bench:raw:{${n % SHARDS}}`, '*', 'r', r, 'rx', String(Date.now()));
    if (++n % PIPE === 0) {
      inFlight.push(p.exec());
      p = redis.pipeline();
      if (inFlight.length >= 4) await inFlight.shift();
    }
  }
  inFlight.push(p.exec());
  await Promise.all(inFlight);
  const seconds = (performance.now() - t) / 1000;
  for (let s = 0; s < SHARDS; s++) await redis.del(`bench:raw:{${s}}`);
  return { entries: n, entriesPerS: n / seconds, seconds };
}

async function rawInflux(url: string, fleet: Fleet, quarters: { from: number; to: number }): Promise<{ pointsPerS: number; points: number; seconds: number }> {
  const influx = await createInflux({ url, bucket: 'rawbench', api: 'v1' }, log);
  await influx.ensureDatabase();
  const { customers } = fleet.registry();
  // Built before the clock starts: the figure is InfluxDB's (and the writer's), not the bench's string building.
  const chunks: string[][] = [];
  for (let ts = quarters.from; ts <= quarters.to; ts += QUARTER_MS) {
    const lines: string[] = [];
    for (let i = 0; i < fleet.meters; i++) {
      const r = fleet.reading(i, ts);
      const c = customers[i];
      if (c === undefined) continue;
      lines.push(readingLine(r, c.feederId));
      // The `interval` line as src/stream/shard-work.ts intervalLine builds it.
      const wh = Math.max(0, Math.round((r.powerW ?? 0) / 4));
      lines.push(
        `interval,band=flat,class=${escTag(c.class)},feeder=${escTag(c.feederId)},meter=${escTag(c.meterId)},transformer=${escTag(c.transformerId)} ` +
          `wh=${wh}i,export_wh=0i,demand_w=${wh * 4},register_wh=${r.importWh}i,estimated=false ${ts - QUARTER_MS}`,
      );
    }
    chunks.push(lines);
  }
  // As the stream worker's writer (src/stream/main.ts): batches of 5000, 2 in flight, high water 200,000.
  const w = influx.writer({ batchSize: 5000, flushMs: 200, highWater: 200_000 });
  let points = 0;
  const t = performance.now();
  for (const lines of chunks) {
    points += lines.length;
    w.write(lines);
    await w.drained();
  }
  await w.flush();
  const seconds = (performance.now() - t) / 1000;
  await w.close();
  await influx.query('DROP DATABASE "rawbench"');
  await influx.close();
  return { pointsPerS: points / seconds, points, seconds };
}

async function rawLimits(svc: Services, redis: Redis): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const fleet = new Fleet({ meters: METERS, prefix: 'B', seed: 7 });
  const batchedQ = Math.max(1, Math.round(RAW_READINGS / METERS));
  const singleQ = Math.max(1, Math.round(RAW_READINGS / 2 / METERS));
  const wb = window(batchedQ, Date.now() - 60 * DAY_MS);
  const ws = window(singleQ, Date.now() - 90 * DAY_MS);
  const perQ = { msgs: fleet.concentrators.length, readings: fleet.meters };

  process.stdout.write(
    `raw MQTT (broker → plain QoS 1 subscriber in its own process), ${fmtInt(batchedQ * perQ.readings)} readings in 100-reading batches …\n`,
  );
  const mb = await rawMqtt(svc.mqtt.url, 'batched', () => fleetMessages(fleet, { mode: 'batched', ...wb }), {
    messages: batchedQ * perQ.msgs,
    readings: batchedQ * perQ.readings,
  });
  process.stdout.write(`raw MQTT, ${fmtInt(singleQ * perQ.readings)} single-reading messages …\n`);
  const ms = await rawMqtt(svc.mqtt.url, 'single', () => fleetMessages(fleet, { mode: 'single', ...ws }), {
    messages: singleQ * perQ.readings,
    readings: singleQ * perQ.readings,
  });
  out.raw_mqtt_msgs_per_s = Math.round(ms.msgsPerS);
  out.raw_mqtt_batched_msgs_per_s = Math.round(mb.msgsPerS);
  out.raw_mqtt_batched_readings_per_s = Math.round(mb.readingsPerS);

  // XADD: single-reading entries (what a single-reading message becomes) and a 100-reading batch split by shard,
  // built before the clock starts.
  process.stdout.write('raw Redis XADD (pipelined, 1000 per pipeline, 4 in flight) …\n');
  const singles = function* (): Generator<string> {
    for (let ts = ws.from; ts <= ws.to; ts += QUARTER_MS) for (let i = 0; i < fleet.meters; i++) yield entryJson([fleet.reading(i, ts)]);
  };
  const xs = await rawXadd(redis, [...singles()]);
  const split = function* (): Generator<string> {
    for (let ts = wb.from; ts <= wb.to; ts += QUARTER_MS) {
      for (let c = 0; c < fleet.concentrators.length; c++) {
        const byShard = new Map<number, Reading[]>();
        for (let i = c * fleet.perConcentrator; i < Math.min(fleet.meters, (c + 1) * fleet.perConcentrator); i++) {
          const r = fleet.reading(i, ts);
          const s = shardOf(r.meterId, SHARDS);
          const l = byShard.get(s);
          if (l) l.push(r);
          else byShard.set(s, [r]);
        }
        for (const rs of byShard.values()) yield entryJson(rs);
      }
    }
  };
  const xb = await rawXadd(redis, [...split()]);
  out.raw_xadd_entries_per_s = Math.round(xs.entriesPerS);
  out.raw_xadd_batched_entries_per_s = Math.round(xb.entriesPerS);
  out.raw_xadd_batched_readings_per_s = Math.round((batchedQ * fleet.meters) / xb.seconds);
  out.raw_xadd_readings_per_batched_entry = Math.round(((batchedQ * fleet.meters) / xb.entries) * 10) / 10;

  process.stdout.write(`raw InfluxDB (reading + interval lines, batches of 5000, influxd 1.x), ${fmtInt(2 * batchedQ * fleet.meters)} points …\n`);
  const inf = await rawInflux(svc.influx.url, fleet, window(batchedQ, Date.now() - 120 * DAY_MS));
  out.raw_influx_points_per_s = Math.round(inf.pointsPerS);
  out.raw_influx_points = inf.points;
  return out;
}

// --- e2e, latency -------------------------------------------------------------------------------------------------

interface Latency {
  probes: number;
  events: number;
  alerts: number;
  p50_publish_to_event_ms: number;
  p99_publish_to_event_ms: number;
  max_publish_to_event_ms: number;
  p50_publish_to_alert_ms: number;
  p99_publish_to_alert_ms: number;
  max_publish_to_alert_ms: number;
  achieved_readings_per_s: number;
  backlog_at_end_entries: number;
}

/**
 * The steady phase: 100-reading concentrator batches every 20 ms (5,000 readings/s), ~5 probe meters a second whose
 * import register restarts (lower than their previous read). The stream worker fires `registerReset` at once and
 * enqueues it on BullMQ `events` (job timestamp = enqueue time, jobId = event id with ':' → '|'); the alerts role
 * opens a `registerReset` alert (no hold in config/alerts.yaml) and finishes the job (finishedOn).
 */
async function latencyPhase(p: Pipeline, fleet: Fleet, w: { from: number; to: number }): Promise<{ phase: PhaseResult; latency: Latency }> {
  const everyMs = (1000 * fleet.perConcentrator) / STEADY_RATE;
  const probeEvery = Math.max(1, Math.round(STEADY_RATE / PROBES_PER_S / fleet.perConcentrator));
  const probed = new Set<number>();
  const sentAt = new Map<string, number>();
  const msgs = fleetMessages(fleet, {
    mode: 'batched',
    ...w,
    probe: (k, members) => {
      if (k % probeEvery !== Math.floor(probeEvery / 2)) return undefined;
      const start = Math.floor(k / probeEvery) % members.length;
      for (let j = 0; j < members.length; j++) {
        const i = members[(start + j) % members.length];
        if (i !== undefined && !probed.has(i)) {
          probed.add(i);
          return i;
        }
      }
      return undefined;
    },
  });
  const quarters = (w.to - w.from) / QUARTER_MS + 1;
  const phase = await p.runPhase(
    `steady ${STEADY_RATE}/s`,
    msgs,
    { readings: quarters * fleet.meters, messages: quarters * fleet.concentrators.length, from: w.from, perQuarter: fleet.meters },
    {
      everyMs,
      onSend: (m, at) => {
        for (const pr of m.probes ?? []) sentAt.set(`${pr.meterId}|${pr.ts}`, at);
      },
    },
  );
  const backlogAtEnd = await p.backlog();
  // Wait for the alerts role to have handled every probe's event.
  const ak = alertKeys('mf');
  const probes = [...sentAt.keys()];
  const eventMs: number[] = [];
  const alertMs: number[] = [];
  let alerts = 0;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const pipe = p.redis.pipeline();
    for (const k of probes) {
      const [meterId, ts] = k.split('|');
      // src/stream/main.ts jobIdOf: the event id `type:subject:ts:status` with ':' → '|', under the queue's prefix.
      pipe.hmget(`${queuePrefix('events')}:events:registerReset|${meterId}|${ts}|firing`, 'timestamp', 'finishedOn');
      pipe.hget(ak.doc, keyField(`registerReset:${meterId}`));
    }
    const res = (await pipe.exec()) ?? [];
    eventMs.length = 0;
    alertMs.length = 0;
    alerts = 0;
    probes.forEach((k, j) => {
      const at = sentAt.get(k) ?? NaN;
      const job = res[2 * j]?.[1];
      const alert = res[2 * j + 1]?.[1];
      if (Array.isArray(job)) {
        const [enq, fin] = job.map((v) => (typeof v === 'string' ? Number(v) : NaN));
        if (enq !== undefined && Number.isFinite(enq)) eventMs.push(enq - at);
        if (fin !== undefined && Number.isFinite(fin) && typeof alert === 'string') alertMs.push(fin - at);
      }
      if (typeof alert === 'string') alerts++;
    });
    if ((eventMs.length === probes.length && alertMs.length === probes.length) || Date.now() > deadline) break;
    await sleep(250);
  }
  const q = (x: number[], pr: number): number => (x.length === 0 ? NaN : Math.round(quantile(x, pr)));
  return {
    phase,
    latency: {
      probes: probes.length,
      events: eventMs.length,
      alerts,
      p50_publish_to_event_ms: q(eventMs, 0.5),
      p99_publish_to_event_ms: q(eventMs, 0.99),
      max_publish_to_event_ms: eventMs.length ? Math.round(Math.max(...eventMs)) : NaN,
      p50_publish_to_alert_ms: q(alertMs, 0.5),
      p99_publish_to_alert_ms: q(alertMs, 0.99),
      max_publish_to_alert_ms: alertMs.length ? Math.round(Math.max(...alertMs)) : NaN,
      achieved_readings_per_s: Math.round(phase.readings / phase.publishSeconds),
      backlog_at_end_entries: backlogAtEnd,
    },
  };
}

function phaseRow(r: PhaseResult): BenchRow {
  return {
    case: r.label,
    readings: r.readings,
    messages: r.messages,
    seconds: Math.round(r.seconds * 10) / 10,
    'readings/s': Math.round(r.readingsPerS),
    'broker-acked/s': Math.round(r.readings / r.publishSeconds),
    complete: r.complete ? 'yes' : 'NO',
    rejected:
      Object.entries(r.rejected)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ') || '-',
  };
}

// --- state bytes per meter ------------------------------------------------------------------------------------------

/**
 * The stream worker alone (its own process, on private redis-server and influxd) on a fleet of `meters` with `days`
 * of 15-min history appended straight to the stream shards as the ingest writes them (entries `r` + `rx`, a
 * 1,000-meter slice of a quarter split by shard per entry, ~62 readings), kept at most --flow-readings ahead of the
 * watermark; then the encoded meter states it checkpointed in `mf:state:{N}`, their Redis memory, its RSS and rate.
 */
async function statePhase(meters: number, days: number): Promise<Record<string, number>> {
  const fleet = new Fleet({ meters, prefix: 'S', seed: 11 });
  const quarters = days * 96 + 1;
  const w = window(quarters);
  const total = quarters * meters;
  const p = await Pipeline.start('state');
  try {
    await p.register(fleet);
    await p.startRoles(['stream']);
    const aheadMs = Math.max(2, Math.ceil(FLOW_READINGS / meters)) * QUARTER_MS + LATENESS_MS;
    const t = performance.now();
    let fed = 0;
    let lastPrint = 0;
    const inFlight: Array<Promise<unknown>> = [];
    for (let ts = w.from; ts <= w.to; ts += QUARTER_MS) {
      while (ts > (await p.watermark()) + aheadMs && ts > w.from + aheadMs) await sleep(50);
      for (let c0 = 0; c0 < meters; c0 += 1000) {
        const byShard = new Map<number, string[]>();
        for (let i = c0; i < Math.min(meters, c0 + 1000); i++) {
          const r = fleet.reading(i, ts);
          const sh = shardOf(r.meterId, SHARDS);
          const l = byShard.get(sh);
          if (l) l.push(JSON.stringify(r));
          else byShard.set(sh, [JSON.stringify(r)]);
        }
        const pipe = p.redis.pipeline();
        for (const [sh, rs] of byShard) pipe.xadd(keys.readings(sh), '*', 'r', `[${rs.join(',')}]`, 'rx', String(Date.now()));
        inFlight.push(pipe.exec());
        if (inFlight.length >= 8) await inFlight.shift();
        fed += Math.min(meters, c0 + 1000) - c0;
      }
      const el = (performance.now() - t) / 1000;
      if (el - lastPrint >= 10) {
        lastPrint = el;
        const wm = await p.watermark();
        const done = Number.isFinite(wm) ? Math.max(0, ((wm + LATENESS_MS - w.from) / QUARTER_MS + 1) * meters) : 0;
        progress(
          `  state: ${el.toFixed(0)} s, appended ${fmtInt(fed)} of ${fmtInt(total)}, processed ≈ ${fmtInt(done)} (${fmtInt(done / el)}/s), ETA ${fmtDuration((total - done) / (done / el))}`,
        );
      }
    }
    await Promise.all(inFlight);
    while ((await p.backlog()) > 0) await sleep(100);
    const seconds = (performance.now() - t) / 1000;
    progress('');
    const fp = await p.footprint(meters);
    return {
      state_meters: meters,
      state_days: days,
      state_readings: total,
      state_bytes_per_meter: fp.state_bytes_per_meter ?? NaN,
      state_bytes_per_meter_p99: fp.state_bytes_per_meter_p99 ?? NaN,
      state_bytes_per_meter_max: fp.state_bytes_per_meter_max ?? NaN,
      state_redis_bytes_per_meter: fp.redis_state_hash_bytes_per_meter ?? NaN,
      state_stream_worker_readings_per_s: Math.round(total / seconds),
      state_stream_rss_mib: fp.stream_rss_mib ?? NaN,
      state_stream_peak_rss_mib: fp.stream_peak_rss_mib ?? NaN,
      state_redis_used_memory_bytes_per_meter: fp.redis_used_memory_bytes_per_meter ?? NaN,
    };
  } finally {
    await p.close();
  }
}

// --- replay -------------------------------------------------------------------------------------------------------

async function replayPhase(): Promise<Record<string, number | boolean>> {
  const fleet = new Fleet({ meters: REPLAY_METERS, prefix: 'R', seed: 3 });
  const quarters = REPLAY_DAYS * 96;
  const w = window(quarters);
  const total = quarters * fleet.meters;
  process.stdout.write(
    `\nreplay: ${REPLAY_DAYS} days × ${fmtInt(fleet.meters)} meters = ${fmtInt(total)} readings in 100-reading batches, every role running` +
      `${Number.isFinite(REPLAY_MAX_S) && REPLAY_MAX_S > 0 ? ` (publishing stops after ${REPLAY_MAX_S} s: then the rest is extrapolated)` : ''}\n`,
  );
  const p = await Pipeline.start('replay');
  try {
    await p.register(fleet);
    await p.startRoles();
    // When the slowest shard's watermark passes each day boundary: the rate before and after the detectors' warm-up.
    const dayAt = new Map<number, number>();
    const r = await p.runPhase(
      'replay',
      fleetMessages(fleet, { mode: 'batched', ...w }),
      { readings: total, messages: quarters * fleet.concentrators.length, from: w.from, perQuarter: fleet.meters },
      {
        maxSeconds: REPLAY_MAX_S > 0 ? REPLAY_MAX_S : undefined,
        onWatermark: (wm, s) => {
          if (!Number.isFinite(wm)) return;
          const d = Math.floor((wm + LATENESS_MS - w.from) / DAY_MS);
          for (let k = 1; k <= d; k++) if (!dayAt.has(k)) dayAt.set(k, s);
        },
      },
    );
    const fp = await p.footprint(fleet.meters);
    const warm = det.baseline.warmupDays;
    const rateBetween = (d0: number, d1: number): number => {
      const t0 = d0 === 0 ? 0 : dayAt.get(d0);
      const t1 = dayAt.get(d1);
      return t0 !== undefined && t1 !== undefined && t1 > t0 ? Math.round(((d1 - d0) * 96 * fleet.meters) / (t1 - t0)) : NaN;
    };
    const lastDay = Math.max(0, ...dayAt.keys());
    const fullSize = REPLAY_DAYS === 30 && fleet.meters === 10_000;
    process.stdout.write(`${table([phaseRow(r)])}\n`);
    return {
      replay_days: REPLAY_DAYS,
      replay_meters: fleet.meters,
      replay_readings: total,
      replay_readings_done: r.appended,
      replay_complete: r.complete,
      replay_readings_per_s: Math.round(r.readingsPerS),
      // The issue's figure: the wall time when 30 days × 10,000 meters completed, else extrapolated from the rate.
      replay_30d_10k_s: fullSize && r.complete ? Math.round(r.seconds) : Math.round((30 * 96 * 10_000) / r.readingsPerS),
      replay_extrapolated: !(fullSize && r.complete),
      replay_wall_s: Math.round(r.seconds),
      replay_cold_readings_per_s: rateBetween(0, Math.min(warm, lastDay)),
      replay_warm_readings_per_s: lastDay > warm ? rateBetween(warm, lastDay) : NaN,
      replay_state_bytes_per_meter: fp.state_bytes_per_meter ?? NaN,
      replay_stream_rss_mib: fp.stream_rss_mib ?? NaN,
      replay_redis_used_memory_bytes_per_meter: fp.redis_used_memory_bytes_per_meter ?? NaN,
    };
  } finally {
    await p.close();
  }
}

// --- scaling ------------------------------------------------------------------------------------------------------

interface ScalingPoint {
  meters: number;
  quarters: number;
  readings: number;
  readingsPerS: number;
  seconds: number;
  complete: boolean;
  footprint: Record<string, number>;
  /** CPU µs (user + system) per reading during the timed phase, per role process and service (absent in older runs). */
  cpuUsPerReading?: Record<string, number>;
  /** The machine's 1-minute load average at the end of the phase: above its cores, other work shared it. */
  loadAvg1?: number;
}

/** The components whose CPU is counted, in table order. */
const CPU_COMPONENTS = ['ingest', 'stream', 'alerts', 'billing', 'api', 'redis', 'mosquitto', 'influxd'] as const;

/** CPU seconds so far of every role process and of the private services (Redis from INFO, the others from /proc). */
async function cpuSample(p: Pipeline): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [role, proc] of p.roles) {
    const s = processCpuSeconds(proc.child.pid);
    if (s !== undefined) out[role] = s;
  }
  out.redis = await redisCpuSeconds(p.redis);
  // Their command lines name the config file in their private data dir.
  for (const [name, svc] of [
    ['mosquitto', p.svc.mqtt],
    ['influxd', p.svc.influx],
  ] as const) {
    const s = processCpuSeconds(pidByCommandLine(svc.dir));
    if (s !== undefined) out[name] = s;
  }
  return out;
}

async function scalingRun(): Promise<void> {
  const list = (a['scaling-meters'] ?? '1000,10000,100000').split(',').map(Number);
  const days = a['scaling-days'] !== undefined ? Number(a['scaling-days']) : quick ? 0 : 1;
  const quarters = days > 0 ? days * 96 + 1 : 9;
  const ctx = machineContext();
  const points: ScalingPoint[] = [];
  for (const meters of list) {
    process.stdout.write(
      `\nscaling: ${fmtInt(meters)} meters × ${quarters} quarters (${fmtInt(meters * quarters)} readings, 100-reading batches), every role running\n`,
    );
    const fleet = new Fleet({ meters, prefix: 'S', seed: 5 });
    const w = window(quarters);
    const p = await Pipeline.start(`scaling-${meters}`);
    try {
      await p.register(fleet);
      await p.startRoles();
      const cpu0 = await cpuSample(p);
      const r = await p.runPhase(`${fmtInt(meters)} meters`, fleetMessages(fleet, { mode: 'batched', ...w }), {
        readings: quarters * meters,
        messages: quarters * fleet.concentrators.length,
        from: w.from,
        perQuarter: meters,
      });
      const cpuUsPerReading = cpuMicrosPerReading(cpu0, await cpuSample(p), r.readings);
      const fp = await p.footprint(meters);
      points.push({
        meters,
        quarters,
        readings: r.readings,
        readingsPerS: Math.round(r.readingsPerS),
        seconds: Math.round(r.seconds),
        complete: r.complete,
        footprint: fp,
        cpuUsPerReading,
        loadAvg1: Math.round((loadavg()[0] ?? Number.NaN) * 10) / 10,
      });
      process.stdout.write(`${table([phaseRow(r)])}\n`);
      process.stdout.write(
        `  CPU µs per reading: ${Object.entries(cpuUsPerReading)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}\n`,
      );
    } finally {
      await p.close();
    }
  }
  const rows: BenchRow[] = points.map((pt) => ({
    case: `${fmtInt(pt.meters)} meters`,
    readings: pt.readings,
    'e2e batched readings/s': pt.readingsPerS,
    'stream RSS MiB': pt.footprint.stream_rss_mib ?? NaN,
    'stream RSS B/meter': pt.footprint.stream_rss_bytes_per_meter ?? NaN,
    'redis used_memory B/meter': pt.footprint.redis_used_memory_bytes_per_meter ?? NaN,
    'state B/meter': pt.footprint.state_bytes_per_meter ?? NaN,
  }));
  process.stdout.write(`\nscaling\n${table(rows)}\n`);
  const file = writeResult('scaling', { name: 'scaling', at: new Date().toISOString(), machine: ctx, quarters, shards: SHARDS, redisFsync: FSYNC, points });
  writeScalingDocs(points, quarters, ctx, file);
}

function writeScalingDocs(
  points: ScalingPoint[],
  quarters: number,
  ctx: ReturnType<typeof machineContext>,
  resultFile: string,
  at = new Date().toISOString(),
): void {
  const docs = a['docs-dir'] === undefined ? fileURLToPath(new URL('../docs/', import.meta.url)) : `${a['docs-dir'].replace(/\/+$/, '')}/`;
  writeFileSync(`${docs}scaling.svg`, scalingSvg(points));
  const rel = resultFile.includes('bench/results/') ? resultFile.slice(resultFile.indexOf('bench/results/')) : resultFile;
  const f = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '–' : fmtInt(n));
  const section = [
    `## Measured: the same end-to-end bench at ${sizes(points.map((p) => p.meters))} meters`,
    '',
    '<!-- Generated by `npm run bench:scaling` (bench/pipeline.ts --scaling), which rewrites only the text between the bench:scaling markers: run it again rather than editing this section. -->',
    '',
    `Every role as its own process (ingest, stream, alerts, billing, api) on private redis-server / mosquitto / influxd,`,
    `one stream worker, ${SHARDS} stream shards; Redis AOF \`appendfsync ${FSYNC}\`, Mosquitto \`max_inflight_messages 1000\` (as deployed).`,
    `Each point: a fresh set of services, the fleet registered, then ${quarters} quarter hours of 15-min reads of every meter`,
    `(${((quarters - 1) / 96).toFixed(quarters > 96 ? 0 : 2)} day(s) + 1 read) published as 100-reading concentrator batches (QoS 1, 500 in flight, kept at most 200,000 readings`,
    'of event time ahead of the stream watermark), timed from the first publish until every reading is appended and every',
    "stream shard is drained (XLEN 0). Memory is read after the drain: the stream worker's RSS (`/proc/<pid>/status`),",
    'Redis `used_memory` (registry, dedup sets, meter states, BullMQ jobs kept a day, …) divided by the meters, and the',
    'mean encoded meter state (`mf:state:{N}` values).',
    '',
    `Machine: ${ctx.cores} cores (${ctx.cpu}), ${ctx.memGiB} GiB, Node ${ctx.node}, commit ${ctx.gitCommit?.slice(0, 10) ?? '?'}${ctx.gitDirty.length ? ' + uncommitted changes' : ''}; ${at.slice(0, 10)}. Raw data: \`${rel}\`.`,
    '',
    '| meters | readings | e2e batched readings/s | wall s | stream worker RSS (MiB) | RSS per meter (B) | Redis used_memory per meter (B) | state per meter (B) |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...points.map(
      (p) =>
        `| ${f(p.meters)} | ${f(p.readings)} | ${f(p.readingsPerS)}${p.complete ? '' : ' (incomplete)'} | ${f(p.seconds)} | ${p.footprint.stream_rss_mib ?? '–'} | ${f(p.footprint.stream_rss_bytes_per_meter)} | ${f(p.footprint.redis_used_memory_bytes_per_meter)} | ${f(p.footprint.state_bytes_per_meter)} |`,
    ),
    '',
    ...cpuTable(points, ctx.cores),
    ...marginal(points),
    '![e2e readings/s and bytes per meter against fleet size](scaling.svg)',
    '',
    'Regenerate: `npm run bench:scaling` (full: 1 day of reads per point; `-- --quick`: 2 hours; `-- --scaling-meters 1000,10000`',
    'and `-- --scaling-days N` to choose; `-- --docs-from bench/results/scaling-….json` rewrites this section from a saved run).',
  ].join('\n');
  writeGeneratedSection(`${docs}scaling.md`, section);
  process.stdout.write(`written the measured section of ${docs}scaling.md, and ${docs}scaling.svg\n`);
}

/** 1000, 10000, 100000 → "1k, 10k and 100k". */
function sizes(list: number[]): string {
  const short = (n: number): string => (n >= 1e6 && n % 1e6 === 0 ? `${n / 1e6}M` : n >= 1e3 && n % 1e3 === 0 ? `${n / 1e3}k` : fmtInt(n));
  const names = list.map(short);
  return names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names.at(-1)}` : (names[0] ?? '');
}

/**
 * CPU per reading of each process over the same timed phase: wall-clock readings/s depend on what else the machine
 * runs, CPU time much less, and 10^6 / µs is what one core of that process absorbs.
 */
function cpuTable(points: ScalingPoint[], ctxCores: number): string[] {
  const measured = points.filter((p) => p.cpuUsPerReading !== undefined);
  if (measured.length === 0) return [];
  const cell = (v: number | undefined): string => (v === undefined ? '–' : fmtInt(v));
  return [
    'CPU time (user + system) of each process during the same timed phase, in µs per reading; one core of a process absorbs',
    '10^6 / µs readings/s (Redis from `INFO cpu`, the others from `/proc/<pid>/stat`; the publisher is not counted).',
    ...(measured.some((p) => p.loadAvg1 !== undefined)
      ? [
          `1-minute load average at the end of each point (the machine has ${ctxCores} cores; above that, other work shared it): ${measured
            .map((p) => `${fmtInt(p.meters)} meters ${p.loadAvg1 ?? '–'}`)
            .join(', ')}.`,
        ]
      : []),
    '',
    `| meters | ${CPU_COMPONENTS.join(' | ')} | total |`,
    `| ---: | ${CPU_COMPONENTS.map(() => '---:').join(' | ')} | ---: |`,
    ...measured.map((p) => {
      const c = p.cpuUsPerReading ?? {};
      const total = CPU_COMPONENTS.reduce((a, k) => a + (c[k] ?? 0), 0);
      return `| ${fmtInt(p.meters)} | ${CPU_COMPONENTS.map((k) => cell(c[k])).join(' | ')} | ${fmtInt(total)} |`;
    }),
    '',
  ];
}

/** What each added meter costs between consecutive points (the fixed overhead of the processes drops out). */
function marginal(points: ScalingPoint[]): string[] {
  const out: string[] = [];
  for (let i = 1; i < points.length; i++) {
    const p0 = points[i - 1];
    const p1 = points[i];
    if (p0 === undefined || p1 === undefined) continue;
    const dm = p1.meters - p0.meters;
    const rss = (((p1.footprint.stream_rss_mib ?? NaN) - (p0.footprint.stream_rss_mib ?? NaN)) * 2 ** 20) / dm;
    const red =
      ((p1.footprint.redis_used_memory_bytes_per_meter ?? NaN) * p1.meters - (p0.footprint.redis_used_memory_bytes_per_meter ?? NaN) * p0.meters) / dm;
    out.push(
      `From ${fmtInt(p0.meters)} to ${fmtInt(p1.meters)} meters, each added meter costs ${fmtInt(rss)} B of stream worker RSS and ${fmtInt(red)} B of Redis \`used_memory\`.`,
    );
  }
  return out.length ? [...out.flatMap((l) => [l, '']), ''].slice(0, -1) : [];
}

/** Two panels, log-scale meters on x: e2e readings/s; bytes per meter (stream RSS, Redis used_memory, state). */
function scalingSvg(points: ScalingPoint[]): string {
  const W = 1000;
  const H = 420;
  const pw = 380;
  const ph = 250;
  const top = 50;
  const lefts = [75, 75 + pw + 110];
  const xs = points.map((p) => Math.log10(p.meters));
  const xmin = Math.min(...xs) - 0.15;
  const xmax = Math.max(...xs) + 0.15;
  const X = (left: number, m: number): number => left + ((Math.log10(m) - xmin) / (xmax - xmin)) * pw;
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const niceMax = (v: number): number => {
    if (!(v > 0)) return 1;
    const e = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 2.5, 5, 10].map((k) => k * e).find((k) => k >= v) ?? 10 * e;
  };
  /** One panel; `log`: a log10 y axis (series spanning orders of magnitude). */
  const panel = (left: number, title: string, series: Array<{ name: string; color: string; values: number[] }>, unit: string, log = false): string => {
    const vals = series.flatMap((s) => s.values.filter((v) => Number.isFinite(v) && v > 0));
    const ymax = log ? 10 ** Math.ceil(Math.log10(Math.max(...vals) * 1.05)) : niceMax(Math.max(...vals) * 1.1);
    const ymin = log ? 10 ** Math.floor(Math.log10(Math.min(...vals))) : 0;
    const Y = (v: number): number =>
      log ? top + ph - ((Math.log10(v) - Math.log10(ymin)) / (Math.log10(ymax) - Math.log10(ymin))) * ph : top + ph - (v / ymax) * ph;
    const ticks = log
      ? Array.from({ length: Math.round(Math.log10(ymax / ymin)) + 1 }, (_, k) => ymin * 10 ** k)
      : Array.from({ length: 5 }, (_, k) => (ymax * k) / 4);
    let s = `<text x="${left + pw / 2}" y="${top - 22}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`;
    s += `<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`;
    for (const v of ticks) {
      s += `<line x1="${left}" x2="${left + pw}" y1="${Y(v)}" y2="${Y(v)}" stroke="#eee"/>`;
      s += `<text x="${left - 6}" y="${Y(v) + 4}" text-anchor="end" font-size="11">${fmtInt(v)}</text>`;
    }
    for (const p of points) {
      s += `<line x1="${X(left, p.meters)}" x2="${X(left, p.meters)}" y1="${top + ph}" y2="${top + ph + 5}" stroke="#999"/>`;
      s += `<text x="${X(left, p.meters)}" y="${top + ph + 18}" text-anchor="middle" font-size="11">${fmtInt(p.meters)}</text>`;
    }
    s += `<text x="${left + pw / 2}" y="${top + ph + 36}" text-anchor="middle" font-size="12">meters (log scale)</text>`;
    s += `<text x="${left - 56}" y="${top + ph / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${left - 56} ${top + ph / 2})">${esc(unit)}</text>`;
    series.forEach((ser, k) => {
      const pts = points
        .map((p, i) => [X(left, p.meters), ser.values[i] ?? NaN] as const)
        .filter(([, v]) => Number.isFinite(v) && (!log || v > 0))
        .map(([x, v]) => [x, Y(v), v] as const);
      s += `<polyline fill="none" stroke="${ser.color}" stroke-width="2" points="${pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ')}"/>`;
      for (const [x, y, v] of pts) {
        s += `<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3.5" fill="${ser.color}"/>`;
        s += `<text x="${(x + 6).toFixed(1)}" y="${(y - 6).toFixed(1)}" font-size="10" fill="${ser.color}">${fmtInt(v)}</text>`;
      }
      s += `<rect x="${left}" y="${top + ph + 50 + k * 16}" width="10" height="10" fill="${ser.color}"/>`;
      s += `<text x="${left + 15}" y="${top + ph + 59 + k * 16}" font-size="11">${esc(ser.name)}</text>`;
    });
    return s;
  };
  const body =
    panel(
      lefts[0] ?? 70,
      'End to end, 100-reading batches',
      [{ name: 'readings/s', color: '#1f77b4', values: points.map((p) => p.readingsPerS) }],
      'readings/s',
    ) +
    panel(
      lefts[1] ?? 530,
      'Memory per meter, after the run',
      [
        { name: 'stream worker RSS / meters', color: '#d62728', values: points.map((p) => p.footprint.stream_rss_bytes_per_meter ?? NaN) },
        { name: 'Redis used_memory / meters', color: '#2ca02c', values: points.map((p) => p.footprint.redis_used_memory_bytes_per_meter ?? NaN) },
        { name: 'encoded state', color: '#9467bd', values: points.map((p) => p.footprint.state_bytes_per_meter ?? NaN) },
      ],
      'bytes per meter (log scale)',
      true,
    );
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="13">\n` +
    `<rect width="${W}" height="${H}" fill="white"/>\n${body}\n</svg>\n`
  );
}

// --- main -----------------------------------------------------------------------------------------------------------

// Ctrl-C / SIGTERM: exit through process 'exit', where the services (simulators/services.ts) and the roles (lib.ts) are killed.
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

async function main(): Promise<void> {
  if (a['raw-subscriber'] !== undefined) return rawSubscriber(a['raw-subscriber'], Number(a.expect));
  if (a['docs-from'] !== undefined) {
    const saved = JSON.parse(readFileSync(a['docs-from'], 'utf8')) as {
      points: ScalingPoint[];
      quarters: number;
      machine: ReturnType<typeof machineContext>;
      at: string;
    };
    return writeScalingDocs(saved.points, saved.quarters, saved.machine, a['docs-from'], saved.at);
  }
  if (a.scaling) return scalingRun();
  const ctx = machineContext();
  const result: Record<string, unknown> = {};
  const phases: BenchRow[] = [];
  process.stdout.write(
    `pipeline bench${quick ? ' (quick)' : ''}: ${fmtInt(METERS)} meters, ${SHARDS} shards, ${ctx.cores} cores, node ${ctx.node}, Redis appendfsync ${FSYNC}\n`,
  );

  // Fleet A: raw limits on its services first (no role running yet), then the roles and the e2e phases.
  if (!SKIP.has('raw') || !SKIP.has('e2e') || !SKIP.has('latency')) {
    const p = await Pipeline.start('e2e');
    try {
      if (!SKIP.has('raw')) Object.assign(result, await rawLimits(p.svc, p.redis));
      if (!SKIP.has('e2e') || !SKIP.has('latency')) {
        const fleet = new Fleet({ meters: METERS, prefix: 'B' });
        const perQ = { readings: fleet.meters, msgs: fleet.concentrators.length };
        const steadyQ = SKIP.has('latency') ? 0 : Math.ceil((STEADY_S * STEADY_RATE) / fleet.meters);
        const singleQ = SKIP.has('e2e') ? 0 : SINGLE_Q;
        const all = window(BATCHED_Q + singleQ + steadyQ);
        const wBatched = { from: all.from, to: all.from + (BATCHED_Q - 1) * QUARTER_MS };
        const wSingle = { from: wBatched.to + QUARTER_MS, to: wBatched.to + singleQ * QUARTER_MS };
        const wSteady = { from: wSingle.to + QUARTER_MS, to: all.to };
        await p.register(fleet);
        await p.startRoles();
        process.stdout.write(
          `\ne2e: every role running; ${fmtInt(fleet.meters)} meters, ${fleet.concentrators.length} concentrators of ${fleet.perConcentrator}\n`,
        );
        // The batched phase also gives every meter its history (1 day by default) before the single and steady phases.
        const rb = await p.runPhase('e2e batched x100', fleetMessages(fleet, { mode: 'batched', ...wBatched }), {
          readings: BATCHED_Q * perQ.readings,
          messages: BATCHED_Q * perQ.msgs,
          from: wBatched.from,
          perQuarter: perQ.readings,
        });
        phases.push(phaseRow(rb));
        process.stdout.write(`${table([phaseRow(rb)])}\n`);
        result.e2e_batched_readings_per_s = Math.round(rb.readingsPerS);
        result.e2e_batched = rb;
        if (singleQ > 0) {
          const rs = await p.runPhase('e2e single', fleetMessages(fleet, { mode: 'single', ...wSingle }), {
            readings: singleQ * perQ.readings,
            messages: singleQ * perQ.readings,
            from: wSingle.from,
            perQuarter: perQ.readings,
          });
          phases.push(phaseRow(rs));
          process.stdout.write(`${table([phaseRow(rs)])}\n`);
          result.e2e_single_readings_per_s = Math.round(rs.readingsPerS);
          result.e2e_single = rs;
        }
        if (steadyQ > 0) {
          process.stdout.write(
            `steady: ${STEADY_RATE} readings/s as 100-reading batches every ${(1000 * fleet.perConcentrator) / STEADY_RATE} ms for ~${STEADY_S} s, ~${PROBES_PER_S} register resets/s\n`,
          );
          const { phase, latency } = await latencyPhase(p, fleet, wSteady);
          phases.push(phaseRow(phase));
          Object.assign(result, latency);
          process.stdout.write(`${table([phaseRow(phase)])}\n`);
          process.stdout.write(
            `latency: ${latency.events}/${latency.probes} events, ${latency.alerts}/${latency.probes} alerts; publish→event p50 ${latency.p50_publish_to_event_ms} ms, p99 ${latency.p99_publish_to_event_ms} ms; ` +
              `publish→alert p50 ${latency.p50_publish_to_alert_ms} ms, p99 ${latency.p99_publish_to_alert_ms} ms (achieved ${fmtInt(latency.achieved_readings_per_s)} readings/s)\n`,
          );
        }
        const fp = await p.footprint(fleet.meters);
        for (const [k, v] of Object.entries(fp)) result[`e2e_${k}`] = v;
        result.e2e_meters = fleet.meters;
        result.e2e_history_quarters = BATCHED_Q + singleQ + steadyQ;
      }
    } finally {
      await p.close();
    }
  }

  if (!SKIP.has('state')) {
    process.stdout.write(
      `\nstate: the stream worker alone on ${fmtInt(STATE_METERS)} meters × ${STATE_DAYS} day(s) + 1 quarter of 15-min reads appended to the shards …\n`,
    );
    Object.assign(result, await statePhase(STATE_METERS, STATE_DAYS));
    process.stdout.write(
      `state bytes per meter: mean ${result.state_bytes_per_meter}, p99 ${result.state_bytes_per_meter_p99}, max ${result.state_bytes_per_meter_max}; Redis ${result.state_redis_bytes_per_meter} B/meter; ` +
        `stream worker ${fmtInt(Number(result.state_stream_worker_readings_per_s))} readings/s, RSS ${result.state_stream_rss_mib} MiB (peak ${result.state_stream_peak_rss_mib})\n`,
    );
  }

  if (!SKIP.has('replay')) Object.assign(result, await replayPhase());

  const summary: BenchRow[] = Object.entries(result)
    .filter(([, v]) => typeof v === 'number' || typeof v === 'boolean')
    .map(([k, v]) => ({ case: k, value: typeof v === 'boolean' ? String(v) : (v as number) }));
  process.stdout.write(`\npipeline\n${table(summary)}\n`);
  writeResult('pipeline', {
    name: 'pipeline',
    at: new Date().toISOString(),
    machine: ctx,
    quick,
    settings: {
      meters: METERS,
      shards: SHARDS,
      window: WINDOW,
      flowReadings: FLOW_READINGS,
      batchedQuarters: BATCHED_Q,
      singleQuarters: SINGLE_Q,
      steadySeconds: STEADY_S,
      steadyRate: STEADY_RATE,
      probesPerSecond: PROBES_PER_S,
      rawReadings: RAW_READINGS,
      stateMeters: STATE_METERS,
      stateDays: STATE_DAYS,
      replayDays: REPLAY_DAYS,
      replayMeters: REPLAY_METERS,
      replayMaxSeconds: REPLAY_MAX_S,
      redisFsync: FSYNC,
    },
    ...result,
    phases,
  });
}

await main();
