import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAlerts } from '../../src/alerts/main.js';
import { buildApp, type ApiApp } from '../../src/api/app.js';
import { startBilling, type BillingHandle } from '../../src/billing/main.js';
import { redisBillingState } from '../../src/billing/state.js';
import { EVENTS_QUEUE, NOTIFY_QUEUE } from '../../src/contracts/alert.js';
import { BILLING_JOBS, BILLING_QUEUE } from '../../src/contracts/billing.js';
import { AlertsConfig } from '../../src/contracts/config-alerts.js';
import { BillingConfig } from '../../src/contracts/config-billing.js';
import { DetectionConfig } from '../../src/contracts/config-detection.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import type { DetectionEvent } from '../../src/contracts/events.js';
import type { Reading } from '../../src/contracts/reading.js';
import { dayWindow } from '../../src/domain/local-time.js';
import { DeadLetterQueue } from '../../src/ingest/dead-letters.js';
import { startIngest } from '../../src/ingest/main.js';
import { StreamAppender } from '../../src/ingest/stream-appender.js';
import { billingKeys } from '../../src/shared/billing-store.js';
import { loadConfig, loadSection } from '../../src/shared/config.js';
import { ConfigError } from '../../src/shared/errors.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { LuaScript } from '../../src/shared/lua.js';
import { closeRedis, createRedis, keys, keySlot, queuePrefix, type RedisClient, scanKeys } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import type { RoleHandle } from '../../src/shared/role.js';
import { LoadAggregator } from '../../src/stream/load-aggregator.js';
import { streamKeys } from '../../src/stream/keys.js';
import { startStream } from '../../src/stream/main.js';
import { generateFleet } from '../../simulators/fleet.js';
import { runSimulation } from '../../simulators/publish.js';
import { customersCsv, transformersCsv } from '../../simulators/registry-csv.js';
import { loadScenario } from '../../simulators/scenario.js';
import { REPO, memoryLogger, roleContext, serviceEnv } from '../helpers/pipeline.js';
import { type LocalRedisCluster, type LocalService, startInflux, startMosquitto, startTestRedisCluster, uniquePrefix } from '../helpers/services.js';
import { startWebhookReceiver } from '../helpers/webhook-receiver.js';

/**
 * Issue 16: every role on a Redis Cluster. A real 3-master cluster (redis-server in cluster mode, joined with
 * `redis-cli --cluster create`) runs the ingest's dedup-and-append script on 16 shards, the alert store's scripts and
 * MULTIs, the billing state, BullMQ queues with their hash-tagged prefixes, the load aggregation and the CLI's registry
 * import, with no CROSSSLOT; then a simulated fleet goes through ingest, stream, billing and API on the cluster and
 * every meter's billed energy must equal the simulator's ledger to the Wh.
 */

const SECRET = 'whsec-cluster-0123456789abcdef';
const TOKEN = 'cluster-billing-token';

describe('REDIS_CLUSTER_NODES, key slots and queue prefixes (no server)', () => {
  it('parses host:port lists; unset or empty means a single Redis', () => {
    expect(loadConfig({}).redis.clusterNodes).toBeUndefined();
    expect(loadConfig({ REDIS_CLUSTER_NODES: '' }).redis.clusterNodes).toBeUndefined();
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'redis-1:6379, 10.0.0.2:7001,[::1]:7002,' }).redis.clusterNodes).toEqual([
      { host: 'redis-1', port: 6379 },
      { host: '10.0.0.2', port: 7001 },
      { host: '::1', port: 7002 },
    ]);
  });

  it.each(['redis-1', 'redis-1:', ':6379', 'redis-1:0', 'redis-1:65536', 'redis://redis-1:6379', '[zz]:7000', ' , '])(
    'rejects "%s" naming REDIS_CLUSTER_NODES',
    (v) => {
      let caught: unknown;
      try {
        loadConfig({ REDIS_CLUSTER_NODES: v });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(ConfigError);
      expect(caught instanceof ConfigError ? caught.variable : undefined).toBe('REDIS_CLUSTER_NODES');
    },
  );

  it('gives each queue a hash tag of its own under the base', () => {
    expect([queuePrefix(EVENTS_QUEUE), queuePrefix(NOTIFY_QUEUE), queuePrefix(BILLING_QUEUE), queuePrefix('events', 't_1')]).toEqual([
      'mf:{events}',
      'mf:{notify}',
      'mf:{billing}',
      't_1:{events}',
    ]);
    expect(keySlot(`${queuePrefix('events')}:events:wait`)).toBe(keySlot('{events}'));
    expect(() => queuePrefix('events', '{x}')).toThrow();
  });

  it('refuses a Lua call whose keys are in different slots before it reaches Redis', async () => {
    const script = new LuaScript('return 1');
    const never = createRedis('redis://127.0.0.1:1', 'never', { failFast: true });
    never.on('error', () => undefined);
    await expect(script.run(never, ['mf:readings:{1}', 'mf:readings:{2}'], [])).rejects.toThrow(/different cluster slots/);
    await expect(script.run(never, [], [])).rejects.toThrow(/at least one key/);
    never.disconnect();
  });
});

describe('every role on a 3-master Redis Cluster', () => {
  let cluster: LocalRedisCluster;
  let mqtt: LocalService;
  let influxSrv: LocalService;
  let redis: RedisClient;
  let dir: string;
  const cleanups: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    [cluster, mqtt, influxSrv] = await Promise.all([startTestRedisCluster(), startMosquitto(), startInflux()]);
    redis = createRedis(loadConfig({ REDIS_CLUSTER_NODES: cluster.clusterNodes }).redis, 'test');
    dir = mkdtempSync(join(tmpdir(), 'mf-redis-cluster-'));
  }, 90_000);

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    if (redis) await closeRedis(redis);
    await Promise.all([cluster?.destroy(), mqtt?.destroy(), influxSrv?.destroy()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const env = (extra: Record<string, string> = {}): Record<string, string> => {
    const first = cluster.nodes[0];
    if (first === undefined) throw new Error('no cluster node');
    return serviceEnv(
      { redis: first, mqtt, influx: influxSrv },
      { REDIS_CLUSTER_NODES: cluster.clusterNodes, INFLUX_API: 'v1', STREAM_SHARDS: '16', ...extra },
    );
  };

  it('is a cluster client with 3 masters, whose slots agree with keySlot', async () => {
    expect(redis).toBeInstanceOf(Cluster);
    const masters = redis instanceof Cluster ? redis.nodes('master') : [];
    expect(masters).toHaveLength(3);
    const sample = ['foo', keys.readings(0), keys.seen(7, 'M-1'), 'mf:{alerts}:doc', `${queuePrefix('billing')}:billing:wait`, 'a{}b', '{}', 'x{y'];
    for (const k of sample) expect({ k, slot: keySlot(k) }).toEqual({ k, slot: await redis.cluster('KEYSLOT', k) });
  });

  it('runs the dedup-and-append script on all 16 shards, whose streams spread over the masters', async () => {
    const appender = new StreamAppender(redis, 16, { windowMs: 30 * 3_600_000, ttlSeconds: 3600 });
    const t0 = Date.UTC(2026, 2, 1);
    const readings: Reading[] = [];
    for (let m = 0; m < 200; m++) for (let i = 1; i <= 4; i++) readings.push({ meterId: `M-${m}`, ts: t0 + i * 900_000, importWh: 1000 + i * 10 });
    const first = await appender.appendReadings(readings, Date.now());
    expect([first.appended, first.duplicates.length]).toEqual([800, 0]);
    const again = await appender.appendReadings(readings.slice(0, 40), Date.now());
    expect([again.appended, again.duplicates.length]).toEqual([0, 40]);
    const events = await appender.appendEvents([{ meterId: 'M-3', ts: t0 + 3_600_000, event: 'lastGasp' }], Date.now());
    expect(events).toBe(1);
    await new DeadLetterQueue(redis, { maxLen: 1000, payloadBytes: 256, source: 'test' }).add(
      'meters/M-1/readings',
      Buffer.from('{'),
      [{ reason: 'not_json', detail: 'x' }],
      Date.now(),
    );
    expect(await redis.xlen(keys.dlq)).toBe(1);

    let appended = 0;
    for (let s = 0; s < 16; s++) appended += Number(await redis.hget(keys.shardStats(s), 'appended'));
    expect(appended).toBe(800);
    // Each master lists only its own keys: the shard streams live on more than one of them.
    const perMaster: number[] = [];
    for (const node of redis instanceof Cluster ? redis.nodes('master') : []) {
      let n = 0;
      let cursor = '0';
      do {
        const [next, batch] = await node.scan(cursor, 'MATCH', 'mf:readings:*', 'COUNT', 1000);
        cursor = next;
        n += batch.length;
      } while (cursor !== '0');
      perMaster.push(n);
    }
    expect(perMaster.reduce((a, b) => a + b, 0)).toBe(16);
    expect(perMaster.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2);
    // scanKeys runs SCAN on every master.
    const seen: string[] = [];
    for await (const batch of scanKeys(redis, 'mf:readings:*')) seen.push(...batch);
    expect(seen.sort()).toEqual(Array.from({ length: 16 }, (_, s) => keys.readings(s)).sort());
    // The ledger run below starts from empty streams.
    await wipe('mf:*');
  });

  it('keeps the billing state and the load aggregation on the cluster', async () => {
    const state = redisBillingState(redis);
    await state.markDayClosed('UTC', '2026-03-02');
    await state.markDayClosed('UTC', '2026-03-01');
    await state.markPeriod('UTC', '2026-03', 'closing');
    expect([await state.lastClosedDay('UTC'), await state.periodState('UTC', '2026-03')]).toEqual(['2026-03-02', 'closing']);
    // One key per DEL: a cluster refuses keys of different slots in one command.
    await Promise.all([redis.del(billingKeys.closedDays), redis.del(billingKeys.closedPeriods)]);

    // Three transformers (three hash tags), one 15-minute slot, judged once the watermark has passed it.
    const slot = Date.UTC(2026, 2, 1, 10);
    const lines: string[] = [];
    const load = new LoadAggregator({
      redis,
      settings: loadSection('detection', DetectionConfig, {}),
      aggMs: 900_000,
      retainMs: 3_600_000,
      shards: 16,
      transformer: async (id) => ({ transformerId: id, feederId: 'F-1', ratingKva: 100 }),
      emit: async (l) => {
        lines.push(...l);
      },
    });
    await load.contribute(
      ['T-1', 'T-2', 'T-3'].flatMap((t, i) => [
        { transformerId: t, feederId: 'F-1', slot, field: `M-${i}a@${slot}`, netW: 1000 * (i + 1) },
        { transformerId: t, feederId: 'F-1', slot, field: `M-${i}b@${slot}`, netW: 500 },
      ]),
    );
    expect(new Set(['T-1', 'T-2', 'T-3'].map((t) => keySlot(streamKeys.load(t, slot)))).size).toBe(3);
    await redis.hset(keys.watermark, Object.fromEntries(Array.from({ length: 16 }, (_, s) => [String(s), String(slot + 5 * 3_600_000)])));
    await load.judgeDue();
    expect(lines.filter((l) => l.startsWith('feeder_load')).map((l) => /demand_kw=([\d.]+)/.exec(l)?.[1])).toEqual(['1.5', '2.5', '3.5']);
    expect(lines.filter((l) => l.startsWith('system_load')).map((l) => /demand_kw=([\d.]+)/.exec(l)?.[1])).toEqual(['7.5']);
    expect([await redis.zcard(streamKeys.loadDue), await redis.zcard(streamKeys.systemDue), await redis.exists(streamKeys.load('T-1', slot))]).toEqual([
      0, 0, 0,
    ]);
    expect(await redis.zcard(streamKeys.loadGc)).toBe(0);
    await Promise.all([redis.del(keys.watermark), redis.del(streamKeys.loadActive)]);
  });

  it('runs BullMQ queues under their own hash-tagged prefixes', async () => {
    const base = uniquePrefix('bq');
    const prefix = queuePrefix('probe', base);
    const queue = new Queue('probe', { connection: redis, prefix });
    const done: string[] = [];
    const worker = new Worker(
      'probe',
      async (job) => {
        done.push(String(job.data.n));
        return job.data.n;
      },
      { connection: redis, prefix, concurrency: 4 },
    );
    cleanups.push(
      () => worker.close(),
      () => queue.close(),
    );
    await queue.addBulk(Array.from({ length: 20 }, (_, n) => ({ name: 'p', data: { n }, opts: { jobId: `p|${n}` } })));
    await queue.add('p', { n: 99 }, { delay: 200 });
    const deadline = Date.now() + 20_000;
    while (done.length < 21 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(done.sort()).toEqual([...Array.from({ length: 20 }, (_, n) => String(n)), '99'].sort());
    expect((await queue.getJobCounts('completed')).completed).toBe(21);
    // Every key of the queue is in the prefix's slot (listed from every master).
    const slots = new Set<number>();
    for await (const batch of scanKeys(redis, `${base}:*`)) for (const k of batch) slots.add(keySlot(k));
    expect([...slots]).toEqual([keySlot(prefix)]);
  });

  it('runs the alerts role: events queue → alert store (Lua commit, MULTIs) → outbox → notify queue → webhook', async () => {
    const receiver = await startWebhookReceiver(SECRET);
    const base = loadSection('alerts', AlertsConfig, {});
    const cfg: AlertsConfig = {
      ...base,
      webhooks: [{ name: 'ops', url: receiver.url, secretEnv: 'MF_WEBHOOK_OPS_SECRET' }],
      routes: [{ webhook: 'ops', severities: [], types: [], customerClasses: [], changes: ['opened', 'escalated', 'flapping', 'resolved'] }],
      quietHours: { ...base.quietHours, enabled: false },
      worker: { eventsConcurrency: 4, sweepSeconds: 0.2, dedupHours: 1, lockSeconds: 5 },
      influx: { enabled: false },
    };
    const { ctx } = roleContext(env());
    const keyPrefix = uniquePrefix('al');
    const qBase = uniquePrefix('aq');
    const alerts = await startAlerts(ctx, { alerts: cfg, env: { MF_WEBHOOK_OPS_SECRET: SECRET }, keyPrefix, queuePrefix: qBase });
    const events = new Queue(EVENTS_QUEUE, { connection: redis, prefix: queuePrefix(EVENTS_QUEUE, qBase) });
    cleanups.push(
      () => receiver.close(),
      () => alerts.close(),
      () => events.close(),
    );
    const ts = Date.UTC(2026, 2, 1, 12);
    const ev: DetectionEvent = {
      id: `spike:M-7:${ts}:firing`,
      type: 'spike',
      status: 'firing',
      subjectKind: 'meter',
      subject: 'M-7',
      ts,
      meterId: 'M-7',
      value: 1800,
      expected: 290,
      score: 6.2,
      severity: 'warning',
      reason: 'spike on M-7',
    };
    await events.add(ev.type, ev, { jobId: ev.id.replaceAll(':', '|') });
    const deadline = Date.now() + 30_000;
    while (receiver.deliveries.size === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(receiver.deliveries.size).toBe(1);
    const alert = await alerts.store.getByKey('spike:M-7');
    expect(alert?.state).toBe('open');
    if (alert === undefined) return;
    expect((await alerts.store.list({}, 10, undefined)).items.map((a) => a.id)).toEqual([alert.id]);
    expect((await alerts.store.history(alert.id)).map((h) => h.action)).toEqual(['opened']);
    expect(await alerts.store.activeCounts()).toEqual({ actionable: 1, suppressed: 0 });
    await alerts.store.addDeadLetter({
      jobId: 'j1',
      webhook: 'ops',
      idempotencyKey: 'k1',
      alertId: alert.id,
      change: 'opened',
      attempts: 5,
      error: 'x',
      failedAt: new Date(ts).toISOString(),
    });
    expect((await alerts.store.deadLetters(10, 0)).items.map((d) => d.jobId)).toEqual(['j1']);
    await alerts.store.forgetDue(alert.id);
    await alerts.sweepNow();
    // The alert keys share `{alerts}` under the prefix: one slot.
    const slots = new Set<number>();
    for await (const batch of scanKeys(redis, `${keyPrefix}:*`)) for (const k of batch) slots.add(keySlot(k));
    expect([...slots]).toEqual([keySlot('{alerts}')]);
  }, 60_000);

  it('imports the registry through the CLI (meterflow customers import / transformers import)', async () => {
    const scenario = loadScenario(
      { name: 'cluster-cli', seed: 5, timezone: 'UTC', from: '2026-03-01T00:00:00Z', to: '+1d', fleet: { meters: 30 } },
      {},
      { now: Date.parse('2026-11-01T00:00:00Z') },
    );
    const fleet = generateFleet(scenario);
    writeFileSync(join(dir, 'cli-customers.csv'), customersCsv(fleet.customers));
    writeFileSync(join(dir, 'cli-transformers.csv'), transformersCsv(fleet.transformers));
    for (const kind of ['customers', 'transformers']) {
      const r = await cli([kind, 'import', join(dir, `cli-${kind}.csv`)], { REDIS_CLUSTER_NODES: cluster.clusterNodes, LOG_LEVEL: 'warn' });
      expect({ kind, code: r.code, out: r.out }).toEqual({
        kind,
        code: 0,
        out: expect.stringContaining(`${kind}: ${kind === 'customers' ? 30 : fleet.transformers.length} imported, 0 rejected`),
      });
    }
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    expect((await registry.allMeters()).length).toBe(30);
    expect((await registry.allTransformers()).length).toBe(fleet.transformers.length);
    // A bad list stops the command with the variable's name.
    const bad = await cli(['customers', 'import', join(dir, 'cli-customers.csv')], { REDIS_CLUSTER_NODES: 'redis-1' });
    expect([bad.code, bad.err]).toEqual([2, expect.stringContaining('REDIS_CLUSTER_NODES')]);
    await Promise.all([redis.del(keys.registryMeters), redis.del(keys.registryTransformers)]);
  }, 60_000);

  it('bills a simulated fleet through ingest, stream, billing and API on the cluster, equal to the ledger to the Wh', async () => {
    const scenario = loadScenario(
      {
        name: 'cluster-ledger',
        seed: 16,
        timezone: 'UTC',
        from: '2026-03-01T00:00:00Z',
        to: '2026-03-03T02:00:00Z',
        batch: 10,
        fleet: {
          meters: 20,
          feeders: 1,
          metersPerTransformer: [5, 8],
          intervalMix: { '15': 0.6, '30': 0.2, '60': 0.2 },
          pvShare: 0.2,
          tariffs: { residential: 'default', commercial: 'default', industrial: 'default', critical: 'default' },
        },
        transport: { duplicates: { count: 30 }, outOfOrder: { count: 10 } },
      },
      {},
      { now: Date.parse('2026-11-01T00:00:00Z') },
    );
    const fleet = generateFleet(scenario);
    const out = join(dir, 'ledger-run');
    // From an empty keyspace: nothing the checks above wrote may stand in for this run's state.
    await wipe('mf:*');
    writeFileSync(join(dir, 'customers.csv'), customersCsv(fleet.customers));
    writeFileSync(join(dir, 'transformers.csv'), transformersCsv(fleet.transformers));
    for (const kind of ['customers', 'transformers']) {
      const r = await cli([kind, 'import', join(dir, `${kind}.csv`)], { REDIS_CLUSTER_NODES: cluster.clusterNodes, LOG_LEVEL: 'warn' });
      expect({ kind, code: r.code, err: r.err }).toEqual({ kind, code: 0, err: '' });
    }

    const { log, lines: logs } = memoryLogger('warn');
    const { ctx, config } = roleContext(
      env({ INFLUX_BUCKET: uniquePrefix('cluster'), MF_TIMEZONE: 'UTC', API_TOKENS: JSON.stringify({ [TOKEN]: ['billing:read'] }) }),
      log,
    );
    expect(config.redis.clusterNodes?.length).toBe(3);
    const roles: RoleHandle[] = [];
    cleanups.push(async () => {
      for (const r of roles.reverse()) await r.close();
    });
    roles.push(await startIngest(ctx));
    roles.push(await startStream(ctx));
    const billingCfg = structuredClone(loadSection('billing', BillingConfig, {}));
    billingCfg.close.everyMs = 500;
    const billing: BillingHandle = await startBilling(ctx, { billing: billingCfg });
    roles.push(billing);
    const influx: Influx = await createInflux(config.influx, log);
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    const app: ApiApp = await buildApp({ config, log, metrics: ctx.metrics, redis, influx, registry }, { docs: false });
    cleanups.push(
      () => app.close(),
      () => influx.close(),
    );

    const summary = await runSimulation({ scenario, mqttUrl: mqtt.url, outDir: out, backfill: true, respond: false, clientId: 'cluster-ledger-sim' });
    expect(summary.meters).toBe(20);

    // Settled: both days closed, every stream drained, no billing job but the tick left.
    const deadline = Date.now() + 60_000;
    let settled = 0;
    while (settled < 3) {
      if (Date.now() > deadline) {
        const lens = await Promise.all(Array.from({ length: 16 }, (_, s) => redis.xlen(keys.readings(s))));
        throw new Error(
          `pipeline did not settle: watermarks ${JSON.stringify(await redis.hgetall(keys.watermark))}, stream lengths ${lens.join(',')}, ` +
            `closed ${JSON.stringify(await redis.hgetall(billingKeys.closedDays))}, logs: ${logs.slice(-10).join('\n')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 500));
      const closed = await redis.hget(billingKeys.closedDays, 'UTC');
      const lens = await Promise.all(Array.from({ length: 16 }, (_, s) => redis.xlen(keys.readings(s))));
      const jobs = await billing.queue.getJobs(['waiting', 'active', 'delayed', 'prioritized']);
      const busy = jobs.filter((j) => j.name !== BILLING_JOBS.tick).length;
      const wm = Object.values(await redis.hgetall(keys.watermark)).map(Number);
      const caughtUp = wm.length > 0 && Math.min(...wm) >= Date.parse('2026-03-03T01:00:00Z');
      settled = caughtUp && closed !== null && closed >= '2026-03-02' && lens.every((n) => n === 0) && busy === 0 ? settled + 1 : 0;
    }
    expect(logs.filter((l) => /CROSSSLOT/.test(l))).toEqual([]);

    const ledger = readLedger(join(out, 'ledger.csv'));
    const res = await app.inject({
      method: 'GET',
      url: '/api/v1/billing/reads?from=2026-03-01&to=2026-03-03&limit=1000',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(res.statusCode).toBe(200);
    const body: unknown = JSON.parse(res.body);
    const items = body !== null && typeof body === 'object' && 'items' in body && Array.isArray(body.items) ? body.items : [];
    expect(items).toHaveLength(20);
    const from = dayWindow('UTC', '2026-03-01').startMs;
    const to = dayWindow('UTC', '2026-03-03').startMs;
    const billed = items.map((it: { meterId: string; startRegisterWh: number; endRegisterWh: number; totalWh: number }) => ({
      meter: it.meterId,
      start: it.startRegisterWh,
      end: it.endRegisterWh,
      total: it.totalWh,
    }));
    const expected = billed.map(({ meter }: { meter: string }) => {
      const rows = ledger.get(meter) ?? [];
      const start = rows.find((r) => r.ts === from)?.importWh ?? NaN;
      const end = rows.find((r) => r.ts === to)?.importWh ?? NaN;
      return { meter, start, end, total: end - start };
    });
    expect(billed).toEqual(expected);
    expect(billed.filter((b: { total: number }) => !(b.total > 0))).toEqual([]);
  }, 150_000);

  /** Deletes every key matching `match` on every master, one DEL per key (their slots differ). */
  async function wipe(match: string): Promise<void> {
    for await (const batch of scanKeys(redis, match)) await Promise.all(batch.map((k) => redis.del(k)));
  }

  /** `node bin/meterflow.js …` with only these variables (and PATH, HOME). */
  function cli(args: string[], vars: Record<string, string>): Promise<{ code: number | null; out: string; err: string }> {
    const child = spawn(process.execPath, ['bin/meterflow.js', ...args], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...vars },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr?.on('data', (b: Buffer) => {
      err += b.toString();
    });
    // 'close': the process has exited and its output is all read.
    return new Promise((resolve) => child.once('close', (code) => resolve({ code, out, err })));
  }
});

/** ledger.csv: meterId,tsMs,importWh,exportWh,published → rows per meter. */
function readLedger(file: string): Map<string, Array<{ ts: number; importWh: number }>> {
  const out = new Map<string, Array<{ ts: number; importWh: number }>>();
  for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
    const [meterId, ts, importWh] = line.split(',');
    if (meterId === undefined || meterId === '') continue;
    const list = out.get(meterId) ?? [];
    list.push({ ts: Number(ts), importWh: Number(importWh) });
    out.set(meterId, list);
  }
  return out;
}
