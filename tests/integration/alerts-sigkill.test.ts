import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { EVENTS_QUEUE, NOTIFY_QUEUE } from '../../src/contracts/alert.js';
import type { DetectionEvent } from '../../src/contracts/events.js';
import { closeRedis, createRedis, queuePrefix } from '../../src/shared/redis.js';
import { startRedis, type LocalService } from '../helpers/services.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

const SECRET = 'whsec-sigkill-0123456789';
const BIN = join(import.meta.dirname, '../../bin/meterflow.js');
const T0 = Date.UTC(2026, 10, 26, 2, 0);

async function waitFor(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `meterflow alerts` as a child process, the way an operator runs it; resolves once it logged that it started. */
function startChild(env: Record<string, string>): Promise<{ child: ChildProcess; exited: Promise<number | null>; output: () => string }> {
  const child = spawn(process.execPath, [BIN, 'alerts'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`alerts child did not start:\n${out}`)), 30_000);
    const onData = (b: Buffer): void => {
      out += b.toString();
      if (out.includes('"msg":"alerts started"')) {
        clearTimeout(timer);
        resolve({ child, exited, output: () => out });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`alerts child exited (${code}) before starting:\n${out}`));
    });
  });
}

describe('alerts worker killed mid-delivery', () => {
  let redisSrv: LocalService;
  let redis: Redis;
  let receiver: WebhookReceiver;
  let dir: string;
  const children: ChildProcess[] = [];
  let release: (status: number) => void = () => undefined;

  beforeAll(async () => {
    redisSrv = await startRedis();
    redis = createRedis(redisSrv.url, 'test');
    // The first request is held open until the test has killed the worker; later ones succeed.
    receiver = await startWebhookReceiver(SECRET, (n) => (n === 1 ? new Promise<number>((r) => (release = r)) : 200));
    dir = mkdtempSync(join(tmpdir(), 'mf-alerts-'));
    writeFileSync(
      join(dir, 'alerts.yaml'),
      stringify({
        webhooks: [{ name: 'ops', url: receiver.url, secretEnv: 'MF_WEBHOOK_OPS_SECRET' }],
        routes: [{ webhook: 'ops', severities: [], types: [], customerClasses: [], changes: [] }],
        quietHours: { enabled: false },
        notify: { attempts: 5, backoffMs: 200, maxBackoffMs: 5000, timeoutMs: 20_000, concurrency: 2 },
        worker: { lockSeconds: 2, sweepSeconds: 0.5 },
        influx: { enabled: false },
      }),
    );
  });

  afterAll(async () => {
    release(200);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await receiver?.close();
    await closeRedis(redis);
    await redisSrv?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('SIGKILL during the webhook call → after restart the job is taken over and delivered exactly once more, same idempotency key', async () => {
    const env = { REDIS_URL: redisSrv.url, MF_CONFIG: dir, MF_WEBHOOK_OPS_SECRET: SECRET, LOG_LEVEL: 'info', MF_INSTANCE: 'sigkill-test', INFLUX_API: 'v1' };
    const first = await startChild(env);
    children.push(first.child);

    const events = new Queue(EVENTS_QUEUE, { connection: redis, prefix: queuePrefix(EVENTS_QUEUE) });
    const ev: DetectionEvent = {
      id: `customerPeak:M-K1:${T0}:firing`,
      type: 'customerPeak',
      status: 'firing',
      subjectKind: 'meter',
      subject: 'M-K1',
      ts: T0,
      meterId: 'M-K1',
      value: 14.2,
      expected: 10,
      score: 1.42,
      severity: 'warning',
      reason: '14.2 kW over the contracted 10 kW',
    };
    await events.add(ev.type, ev, { jobId: ev.id.replaceAll(':', '|') });
    await waitFor('the first delivery attempt to arrive', () => receiver.requests.length === 1);

    first.child.kill('SIGKILL');
    expect(await first.exited).toBeNull(); // killed by signal, no exit code
    release(200); // too late: the sender is gone, its socket closed

    const notify = new Queue(NOTIFY_QUEUE, { connection: redis, prefix: queuePrefix(NOTIFY_QUEUE) });
    expect(await notify.getJobCounts('active', 'completed', 'waiting')).toEqual({ active: 1, completed: 0, waiting: 0 });

    const second = await startChild(env);
    children.push(second.child);
    await waitFor('the taken-over delivery', () => receiver.deliveries.size === 1);
    await waitFor('the job to complete', async () => (await notify.getJobCounts('completed')).completed === 1);
    await new Promise((r) => setTimeout(r, 3000)); // two more sweep and stalled-check cycles: nothing else may arrive

    expect(receiver.requests.length).toBe(2);
    const [a, b] = receiver.requests;
    expect(a?.idempotencyKey).toBe(b?.idempotencyKey);
    expect(a?.body).not.toBe(''); // same change, re-signed with a fresh timestamp
    expect(receiver.requests.every((r) => r.verified)).toBe(true);
    expect([...receiver.deliveries.keys()]).toEqual([a?.idempotencyKey]);
    expect(b?.json).toMatchObject({ change: 'opened', alert: { key: 'customerPeak:M-K1', count: 1 } });
    expect(await notify.getJobCounts('active', 'completed', 'failed')).toEqual({ active: 0, completed: 1, failed: 0 });

    // The alert survived the kill: the next interval's event counts on it, no new alert, no new notice.
    await events.add(
      ev.type,
      { ...ev, id: `customerPeak:M-K1:${T0 + 900_000}:firing`, ts: T0 + 900_000 },
      { jobId: `customerPeak|M-K1|${T0 + 900_000}|firing` },
    );
    await waitFor('count 2', async () => {
      const raw = await redis.hget('mf:{alerts}:doc', 'k:customerPeak:M-K1');
      const id: unknown = raw === null ? null : JSON.parse(raw);
      const doc = typeof id === 'string' ? await redis.hget('mf:{alerts}:doc', `a:${id}`) : null;
      return doc !== null && doc.includes('"count":2');
    });
    await new Promise((r) => setTimeout(r, 1000));
    expect(receiver.requests.length).toBe(2);

    // A graceful stop exits 0.
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    await events.close();
    await notify.close();
  });
});
