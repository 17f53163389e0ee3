import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DetectionEvent } from '../../src/contracts/events.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { closeRedis, createRedis, keys, queuePrefix } from '../../src/shared/redis.js';
import { streamKeys } from '../../src/stream/keys.js';
import { startStream } from '../../src/stream/main.js';
import { exited, memoryLogger, roleContext, spawnRole } from '../helpers/pipeline.js';
import { startInflux, startRedis, uniquePrefix, type LocalService } from '../helpers/services.js';
import {
  at,
  buildFleet,
  EXCHANGED,
  EXCHANGED_WH_PER_Q,
  feedEntries,
  fleetEntries,
  FLEET_START,
  loadRegistry,
  Q,
  type Fleet,
} from '../../simulators/stream-fleet.js';

const SHARDS = 4;
let influxd: LocalService;
let influx: Influx;
let dir: string;
const cleanup: Array<() => Promise<void>> = [];

beforeAll(async () => {
  influxd = await startInflux();
  dir = mkdtempSync(join(tmpdir(), 'mf-stream-test-'));
  const { log } = memoryLogger('error');
  influx = await createInflux({ url: influxd.url, bucket: 'meterflow', api: 'v1' }, log);
});

afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  await influx.close();
  await influxd.destroy();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Test tuning on top of config/detection.yaml: a 2-day warm-up (and slots that judge from their first day) so a few
 * days of data exercise every detector. The fixture's meters use exactly the same energy every quarter hour, which
 * `stuck` would rightly call stuck: it is off here (tests/unit/detectors-collective.test.ts covers it).
 */
function configFile(extra = ''): string {
  const file = join(dir, `${uniquePrefix('cfg')}.yaml`);
  writeFileSync(
    file,
    `detection:
  baseline: { warmupDays: 2, minSlotSamples: 1 }
  stuck: { minHours: 1000000 }
  systemPeak: { thresholdKw: 23, warningRatio: 0.9 }
  worker: { idleMs: 50, leaseMs: 2000, batchEntries: ${extra === 'small-batches' ? 16 : 50}, statsSeconds: 1 }
`,
  );
  return file;
}

/** Config sections are read from process.env's MF_CONFIG (one process per role), so in-process runs set it too. */
function env(redis: LocalService, db: string, cfg: string, shards = SHARDS): Record<string, string> {
  process.env.MF_CONFIG = cfg;
  return {
    REDIS_URL: redis.url,
    INFLUX_URL: influxd.url,
    INFLUX_BUCKET: db,
    INFLUX_API: 'v1',
    STREAM_SHARDS: String(shards),
    MF_TIMEZONE: 'UTC',
    MF_CONFIG: cfg,
    LOG_LEVEL: 'warn',
    MF_INSTANCE: 'test',
    WORKER_INDEX: '0',
    WORKER_COUNT: '1',
  };
}

async function freshRedis(): Promise<{ svc: LocalService; redis: Redis }> {
  const svc = await startRedis();
  const redis = createRedis(svc.url, 'test');
  cleanup.push(async () => {
    await closeRedis(redis);
    await svc.destroy();
  });
  return { svc, redis };
}

async function backlog(redis: Redis, shards = SHARDS): Promise<number> {
  let n = 0;
  for (let s = 0; s < shards; s++) n += await redis.xlen(keys.readings(s));
  return n;
}

/** Waits until every entry is processed and every load interval the watermark has closed is judged. */
async function drained(redis: Redis, timeoutMs = 90_000, shards = SHARDS): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const wms = (await redis.hvals(keys.watermark)).map(Number);
    const wm = wms.length === shards ? Math.min(...wms) : 0;
    const due = (await redis.zcount(streamKeys.loadDue, '-inf', wm)) + (await redis.zcount(streamKeys.systemDue, '-inf', wm));
    if ((await backlog(redis, shards)) === 0 && due === 0) return;
    if (Date.now() > until) throw new Error(`not drained: backlog ${await backlog(redis, shards)}, due ${due}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function isEvent(v: unknown): v is DetectionEvent {
  return v !== null && typeof v === 'object' && 'id' in v && 'type' in v && 'status' in v && 'subject' in v && 'ts' in v;
}

async function queuedEvents(url: string): Promise<{ ids: string[]; events: DetectionEvent[] }> {
  const conn = createRedis(url, 'test-queue');
  const q = new Queue('events', { connection: conn, prefix: queuePrefix('events') });
  const jobs = await q.getJobs(['waiting', 'delayed', 'completed', 'failed', 'active'], 0, -1);
  await q.close();
  await closeRedis(conn);
  const events = jobs.map((j) => j.data).filter(isEvent);
  return { ids: jobs.map((j) => j.id ?? ''), events };
}

/** Run B's interval and anomaly series and queued events equal run A's (an uninterrupted single worker): no event twice. */
async function expectSameOutputs(a: { db: string; redisUrl: string }, b: { db: string; redisUrl: string }): Promise<void> {
  const series = async (db: string, m: string) => {
    const rows = await influx.query(`SELECT * FROM ${m} GROUP BY *`, { db });
    return rows.map((s) => JSON.stringify([s.tags, s.values])).sort();
  };
  const ia = await series(a.db, 'interval');
  expect(ia.length).toBe(121);
  expect(await series(b.db, 'interval')).toEqual(ia);
  expect(await series(b.db, 'anomaly')).toEqual(await series(a.db, 'anomaly'));
  const ea = await queuedEvents(a.redisUrl);
  const eb = await queuedEvents(b.redisUrl);
  expect(ea.ids.length).toBeGreaterThan(20);
  expect(new Set(eb.ids).size).toBe(eb.ids.length);
  expect([...eb.ids].sort()).toEqual([...ea.ids].sort());
  const byId = (l: DetectionEvent[]) => [...l].sort((x, y) => x.id.localeCompare(y.id));
  expect(byId(eb.events).filter((e) => e.subjectKind === 'meter')).toEqual(byId(ea.events).filter((e) => e.subjectKind === 'meter'));
}

async function seed(redis: Redis, fleet: Fleet, shards = SHARDS): Promise<number> {
  await loadRegistry(redis, fleet);
  const entries = fleetEntries(fleet, shards);
  await feedEntries(redis, entries);
  return entries.length;
}

const hhmm = (ts: number): string => {
  const d = Math.floor((ts - FLEET_START) / 86_400_000);
  return `d${d} ${new Date(ts).toISOString().slice(11, 16)}`;
};

describe('stream worker with real Redis, InfluxDB and BullMQ', () => {
  it('a simulated fleet with known anomalies yields the expected events, intervals and dead letters', async () => {
    const { svc, redis } = await freshRedis();
    const fleet = buildFleet({ meters: 14, quarters: 5 * 96 + 24, anomalies: true });
    await seed(redis, fleet);
    const db = uniquePrefix('stream');
    const { ctx } = roleContext(env(svc, db, configFile()));
    const handle = await startStream(ctx);
    await drained(redis);
    await handle.close();

    const { ids, events } = await queuedEvents(svc.url);
    expect(new Set(ids).size).toBe(ids.length);
    const got = events.map((e) => `${e.type} ${e.subject} ${e.status} ${hhmm(e.ts)}`).sort();
    const flat: string[] = [];
    for (let t = at(4, 2); t <= at(4, 6); t += Q) flat.push(`flatline M-0007 firing ${hhmm(t)}`);
    const expected = [
      'spike M-0000 firing d4 12:15',
      'spike M-0000 clear d4 12:30',
      'reverseFlow M-0001 firing d3 10:15',
      'reverseFlow M-0001 firing d3 10:30',
      'reverseFlow M-0001 clear d3 10:45',
      'lastGasp M-0002 firing d4 06:05',
      'silent M-0002 firing d4 07:00',
      'silent M-0009 firing d1 23:45',
      'silent M-0009 clear d1 23:45',
      'registerReset M-0003 firing d3 08:00',
      'registerReset M-0003 clear d3 08:15',
      'voltage M-0004 firing d2 09:30',
      'voltage M-0004 clear d2 09:45',
      'customerPeak M-0005 firing d3 14:15',
      'customerPeak M-0005 clear d3 14:30',
      'spike M-0005 firing d3 14:15',
      'spike M-0005 clear d3 14:30',
      // drop: from d2 00:00 at a fifth of its baseline; seen ~5 h later (the CUSUM's evidence), repeated daily while it holds
      'drop M-0006 firing d2 05:15',
      'drop M-0006 firing d3 05:15',
      'drop M-0006 firing d4 05:15',
      ...flat,
      'flatline M-0007 clear d4 06:15',
      'feederOverload T-HOT firing d4 18:15',
      'feederOverload T-HOT clear d4 18:30',
      'systemPeak system firing d4 18:15',
      'systemPeak system clear d4 18:30',
    ].sort();
    expect(got).toEqual(expected);
    const overload = events.find((e) => e.type === 'feederOverload' && e.status === 'firing');
    expect(overload).toMatchObject({ severity: 'major', value: 20, expected: 19, transformerId: 'T-HOT', feederId: 'F-H' });
    expect(ids).toContain(`spike|M-0000|${at(4, 12, 15)}|firing`);
    // a meter gone silent still carries its registry facts (it had no read in the batch that noticed)
    expect(events.find((e) => e.type === 'silent' && e.subject === 'M-0002')).toMatchObject({ customerId: 'C-2', transformerId: 'T-A', feederId: 'F-A' });
    const spike = events.find((e) => e.id === `spike:M-0000:${at(4, 12, 15)}:firing`);
    expect(spike).toMatchObject({
      subjectKind: 'meter',
      meterId: 'M-0000',
      customerId: 'C-0',
      customerClass: 'residential',
      transformerId: 'T-A',
      value: 2000,
    });

    // the backlog flushed after its day closed asks billing to recompute that day, once
    const billing = new Queue('billing', { connection: redis, prefix: queuePrefix('billing') });
    const recomputes = await billing.getJobs(['waiting'], 0, -1);
    expect(recomputes.map((j) => [j.name, j.data])).toEqual([['recompute', { meterId: 'M-0009', day: '2026-11-03' }]]);
    expect(recomputes[0]?.id).toMatch(/^recompute\|M-0009\|2026-11-03\|\d+-\d+$/);
    await billing.close();

    // the late read is dead-lettered with its reason
    const dlq = await redis.xrange(keys.dlq, '-', '+');
    expect(dlq.map(([, f]) => [f[f.indexOf('reason') + 1], f[f.indexOf('meterId') + 1]])).toEqual([['late', 'M-0009']]);

    const q = async (sql: string) => (await influx.query(sql, { db }))[0]?.values[0] ?? [];
    // every interval of a meter, summing exactly to its register delta (504 quarters: 5 days + 6 h)
    expect((await q(`SELECT count(wh), sum(wh) FROM interval WHERE meter='M-0000'`)).slice(1)).toEqual([504, 504 * 100 + 1900]);
    // out-of-order and duplicate reads: same intervals as in order, none estimated
    expect((await q(`SELECT count(wh), sum(wh) FROM interval WHERE meter='M-0008'`)).slice(1)).toEqual([504, 504 * 103]);
    expect(await q(`SELECT count(wh) FROM interval WHERE meter='M-0008' AND estimated=true`)).toEqual([]);
    // the reset interval counts zero and is estimated
    expect((await q(`SELECT wh, estimated FROM interval WHERE meter='M-0003' AND time=${at(3, 7, 45)}ms`)).slice(1)).toEqual([0, true]);
    // unregistered meters are processed with the registry defaults
    expect((await q(`SELECT count(wh) FROM interval WHERE meter='M-UNREG' AND feeder='unassigned' AND band='flat'`)).slice(1)).toEqual([504]);
    expect((await q(`SELECT demand_kw, rating_kw FROM feeder_load WHERE transformer='T-HOT' AND time=${at(4, 18)}ms`)).slice(1)).toEqual([20, 19]);
    expect((await q(`SELECT count(value) FROM anomaly WHERE meter='M-0007' AND type='flatline'`)).slice(1)).toEqual([18]);
    expect((await q(`SELECT count(expected_wh) FROM baseline WHERE meter='M-0000'`)).slice(1)).toEqual([126]);
    // pipeline health: every reading counted once, the late one rejected, the duplicate seen
    const readings = fleet.items.filter((it) => it.reading !== undefined).length;
    expect((await q(`SELECT sum(readings), sum(rejected), sum(duplicates) FROM pipeline WHERE "role"='stream'`)).slice(1)).toEqual([readings, 1, 1]);
    expect((await q(`SELECT sum("count") FROM dlq WHERE reason='late'`)).slice(1)).toEqual([1]);
  }, 120_000);

  it('a replaced meter bills exactly what the ledger says, whether its work order comes before or after the reset read', async () => {
    const { svc, redis } = await freshRedis();
    const quarters = 3 * 96;
    const fleet = buildFleet({ meters: 4, quarters, anomalies: false, exchanges: true });
    await seed(redis, fleet);
    const db = uniquePrefix('exchange');
    const handle = await startStream(roleContext(env(svc, db, configFile())).ctx);
    await drained(redis);
    await handle.close();

    const q = async (sql: string) => (await influx.query(sql, { db }))[0]?.values[0] ?? [];
    for (const x of EXCHANGED) {
      // every interval written, summing to the ledger (the meters' true energy) to the watt-hour
      expect([x.meterId, ...(await q(`SELECT count(wh), sum(wh) FROM interval WHERE meter='${x.meterId}'`)).slice(1)]).toEqual([
        x.meterId,
        quarters,
        quarters * EXCHANGED_WH_PER_Q,
      ]);
      // the reset interval itself: exact, not estimated
      expect([x.meterId, ...(await q(`SELECT wh, estimated FROM interval WHERE meter='${x.meterId}' AND time=${at(1, 8)}ms`)).slice(1)]).toEqual([
        x.meterId,
        EXCHANGED_WH_PER_Q,
        false,
      ]);
    }
    const { events } = await queuedEvents(svc.url);
    expect(
      events
        .filter((e) => e.type === 'registerReset' && e.status === 'firing')
        .map((e) => `${e.subject} ${hhmm(e.ts)}`)
        .sort(),
    ).toEqual(['M-X1 d1 08:15', 'M-X2 d1 08:15', 'M-X3 d1 08:15']);
    // the work order that came after its day closed asks billing to recompute that day, like late readings do
    const billing = new Queue('billing', { connection: redis, prefix: queuePrefix('billing') });
    const recomputes = await billing.getJobs(['waiting'], 0, -1);
    expect(recomputes.map((j) => [j.name, j.data])).toEqual([['recompute', { meterId: 'M-X3', day: '2026-11-03' }]]);
    await billing.close();
  }, 120_000);

  it('SIGKILL in the middle of a backfill: after a restart the interval series equal an uninterrupted run, no event twice', async () => {
    const fleet = buildFleet({ meters: 120, quarters: 4 * 96 + 72, anomalies: true });
    const cfg = configFile('small-batches');

    // A: uninterrupted
    const a = await freshRedis();
    await seed(a.redis, fleet);
    const dbA = uniquePrefix('streamA');
    const ha = await startStream(roleContext(env(a.svc, dbA, cfg)).ctx);
    await drained(a.redis);
    await ha.close();

    // B: a separate process, killed mid-way, then restarted
    const b = await freshRedis();
    await seed(b.redis, fleet);
    const total = await backlog(b.redis);
    const dbB = uniquePrefix('streamB');
    const child = spawnRole('stream', env(b.svc, dbB, cfg));
    for (;;) {
      const left = await backlog(b.redis);
      if (left < total * 0.6) break;
      if (child.exitCode !== null) throw new Error(`stream worker exited early: ${child.output()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGKILL');
    await exited(child);
    const left = await backlog(b.redis);
    expect(left).toBeGreaterThan(0); // really killed in the middle
    expect(left).toBeLessThan(total);
    const hb = await startStream(roleContext(env(b.svc, dbB, cfg)).ctx);
    await drained(b.redis);
    await hb.close();

    await expectSameOutputs({ db: dbA, redisUrl: a.svc.url }, { db: dbB, redisUrl: b.svc.url });
  }, 240_000);

  it('three workers share the shards by lease; one SIGKILLed, one SIGSTOPped past its lease and resumed: intervals equal a single worker, no event twice', async () => {
    const shards = 9;
    const fleet = buildFleet({ meters: 120, quarters: 4 * 96 + 72, anomalies: true });
    const cfg = configFile('small-batches');
    const until = async (what: string, ok: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> => {
      const deadline = Date.now() + timeoutMs;
      while (!(await ok())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };

    // A: one worker, uninterrupted.
    const a = await freshRedis();
    await seed(a.redis, fleet, shards);
    const dbA = uniquePrefix('leaseA');
    const ha = await startStream(roleContext(env(a.svc, dbA, cfg, shards)).ctx);
    await drained(a.redis, 90_000, shards);
    await ha.close();

    // B: three worker processes on one Redis.
    const b = await freshRedis();
    const dbB = uniquePrefix('leaseB');
    const spawn = (name: string) => spawnRole('stream', { ...env(b.svc, dbB, cfg, shards), MF_INSTANCE: name, LOG_LEVEL: 'info' });
    const workers = { x: spawn('x'), y: spawn('y'), z: spawn('z') };
    cleanup.push(async () => {
      for (const w of Object.values(workers)) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
    });
    /** Lease holders by shard (the consumer names carry MF_INSTANCE). */
    const holders = async (): Promise<string[]> => Promise.all(Array.from({ length: shards }, async (_, s) => (await b.redis.get(streamKeys.lease(s))) ?? '-'));
    const heldBy = async (name: string): Promise<number> => (await holders()).filter((h) => h.startsWith(`stream-${name}-`)).length;
    // All three hold a share (3 each) before any entry exists, so each really works on the backfill.
    await until('the three workers to share the shards', async () => (await heldBy('x')) === 3 && (await heldBy('y')) === 3 && (await heldBy('z')) === 3);
    await seed(b.redis, fleet, shards);
    const total = await backlog(b.redis, shards);

    // x dies mid-run; y and z take its shards over once its leases expire (leaseMs 2000).
    await until('a quarter of the backlog processed', async () => (await backlog(b.redis, shards)) < total * 0.75);
    workers.x.kill('SIGKILL');
    await exited(workers.x);
    await until("x's shards taken over", async () => (await heldBy('x')) === 0 && (await heldBy('y')) + (await heldBy('z')) === shards, 30_000);

    // y is stopped mid-run past its lease: z takes every shard; y, resumed, finds its reads and checkpoints fenced.
    expect(await backlog(b.redis, shards)).toBeGreaterThan(0);
    workers.y.kill('SIGSTOP');
    await until("y's shards taken over by z", async () => (await heldBy('z')) === shards, 30_000);
    const beforeResume = await backlog(b.redis, shards);
    workers.y.kill('SIGCONT');
    await drained(b.redis, 120_000, shards);
    expect(beforeResume).toBeGreaterThan(0); // y really stopped in the middle of the run
    expect(workers.y.exitCode).toBeNull();
    expect(workers.z.exitCode).toBeNull();
    // y noticed it lost its leases (renewal refused, or a fenced read or checkpoint) and took shards back later.
    await until('y to lose its leases and rebalance', async () => workers.y.output().includes('shard lease lost') && (await heldBy('y')) > 0, 30_000);
    await drained(b.redis, 60_000, shards);
    for (const w of [workers.y, workers.z]) w.kill('SIGTERM');
    await Promise.all([exited(workers.y), exited(workers.z)]);
    expect(workers.y.exitCode, workers.y.output().slice(-3000)).toBe(0);
    expect(await holders()).toEqual(Array.from({ length: shards }, () => '-')); // handed back on SIGTERM

    await expectSameOutputs({ db: dbA, redisUrl: a.svc.url }, { db: dbB, redisUrl: b.svc.url });
  }, 300_000);
});
