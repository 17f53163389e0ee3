import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeRedis, createRedis, keys } from '../../src/shared/redis.js';
import { STREAM_GROUP, streamKeys } from '../../src/stream/keys.js';
import { FENCED_CHECKPOINT, FENCED_READ, isFenced, ShardLeases, Turn } from '../../src/stream/leases.js';
import { memoryLogger } from '../helpers/pipeline.js';
import { startRedis, type LocalService } from '../helpers/services.js';

/** Shard leases against a real Redis: balance, expiry and takeover, fencing of reads and checkpoints, the judging turn. */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const SHARDS = 6;
const TTL = 600;

describe('stream shard leases', () => {
  let svc: LocalService;
  let redis: Redis;
  beforeAll(async () => {
    svc = await startRedis();
    redis = createRedis(svc.url, 'leases-test');
  });
  afterAll(async () => {
    await closeRedis(redis);
    await svc.destroy();
  });

  const leases = (consumer: string, fixed?: number[]) =>
    new ShardLeases({ redis, consumer, shards: SHARDS, fixed, ttlMs: TTL, log: memoryLogger('error').log });

  it('balances the shards over the live workers, and a worker that stops renewing loses them to the other', async () => {
    await redis.flushall();
    const a = leases('a');
    const b = leases('b');
    expect((await a.rebalance()).acquired).toHaveLength(SHARDS); // alone: every shard
    expect((await b.rebalance()).acquired).toEqual([]); // all held; b's share comes once a hands back
    const surplus = (await a.rebalance()).surplus;
    expect(surplus).toHaveLength(SHARDS / 2);
    for (const s of surplus) await a.release(s);
    expect((await b.rebalance()).acquired.sort()).toEqual([...surplus].sort());
    expect([...a.owned(), ...b.owned()].sort()).toEqual([0, 1, 2, 3, 4, 5]);

    // a stops renewing (as a SIGSTOPped or dead process): its leases expire and b takes them.
    b.start();
    await sleep(TTL * 2);
    const taken = await b.rebalance();
    expect(b.owned()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(taken.acquired.sort()).toEqual([...a.owned()].sort());
    // a resumes: its renewals are refused and it learns it lost every shard.
    await a.renew();
    expect(a.owned()).toEqual([]);
    expect((await a.rebalance()).lost.sort()).toEqual([...taken.acquired].sort());
    await b.close();
    await a.close();
    for (let s = 0; s < SHARDS; s++) expect(await redis.exists(streamKeys.lease(s))).toBe(0);
  });

  it('fences the reads and checkpoints of an owner that lost its lease', async () => {
    await redis.flushall();
    const stream = keys.readings(0);
    await redis.xgroup('CREATE', stream, STREAM_GROUP, '0', 'MKSTREAM');
    const id = await redis.xadd(stream, '*', 'r', '[]');
    const old = leases('old', [0]);
    await old.rebalance();
    const oldValue = old.value(0) ?? '';
    const read = (value: string) => FENCED_READ.run(redis, [streamKeys.lease(0), stream], [value, STREAM_GROUP, 'c', 10, '>']);
    const checkpoint = (value: string) =>
      FENCED_CHECKPOINT.run(
        redis,
        [streamKeys.lease(0), streamKeys.state(0), streamKeys.meta(0), stream],
        [value, STREAM_GROUP, '123', 1, 'M-1', 'state', id ?? ''],
      );
    expect(JSON.stringify(await read(oldValue))).toContain(id ?? 'x');

    await sleep(TTL * 2); // old paused past its lease
    const next = leases('next', [0]);
    await next.rebalance();
    const newValue = next.value(0) ?? '';
    expect(newValue).not.toBe(oldValue);
    const fenced = async (p: Promise<unknown>) =>
      p.then(
        () => false,
        (err: unknown) => isFenced(err),
      );
    expect(await fenced(read(oldValue))).toBe(true);
    expect(await fenced(checkpoint(oldValue))).toBe(true);
    expect(await redis.hget(streamKeys.state(0), 'M-1')).toBeNull(); // nothing of the fenced checkpoint landed
    expect(await redis.xlen(stream)).toBe(1);

    await checkpoint(newValue);
    expect(await redis.hget(streamKeys.state(0), 'M-1')).toBe('state');
    expect(await redis.hget(streamKeys.meta(0), 'wm')).toBe('123');
    expect(await redis.xlen(stream)).toBe(0); // acknowledged and deleted
  });

  it('a checkpoint of many meters and entries fits Lua (chunked HSET, XACK and XDEL)', async () => {
    await redis.flushall();
    const stream = keys.readings(1);
    await redis.xgroup('CREATE', stream, STREAM_GROUP, '0', 'MKSTREAM');
    const ids: string[] = [];
    for (let i = 0; i < 3000; i++) ids.push((await redis.xadd(stream, '*', 'r', '[]')) ?? '');
    const l = leases('big', [1]);
    await l.rebalance();
    await FENCED_READ.run(redis, [streamKeys.lease(1), stream], [l.value(1) ?? '', STREAM_GROUP, 'c', 5000, '>']);
    const states = Array.from({ length: 20_000 }, (_, i) => [`M-${i}`, `s${i}`]).flat();
    await FENCED_CHECKPOINT.run(
      redis,
      [streamKeys.lease(1), streamKeys.state(1), streamKeys.meta(1), stream],
      [l.value(1) ?? '', STREAM_GROUP, '9', 20_000, ...states, ...ids],
    );
    expect(await redis.hlen(streamKeys.state(1))).toBe(20_000);
    expect(await redis.xlen(stream)).toBe(0);
    expect(Number((await redis.xpending(stream, STREAM_GROUP))[0])).toBe(0);
  });

  it('gives the judging turn to one worker at a time, and tells a holder paused past it that it is no longer its own', async () => {
    await redis.flushall();
    const t1 = new Turn(redis, streamKeys.judgeTurn, 'w1', TTL);
    const t2 = new Turn(redis, streamKeys.judgeTurn, 'w2', TTL);
    let inside = 0;
    let most = 0;
    const pass = async () => {
      inside++;
      most = Math.max(most, inside);
      await sleep(TTL * 1.5); // longer than the TTL: renewed while it runs
      inside--;
    };
    const ran = await Promise.all([t1.run(pass), sleep(50).then(() => t2.run(pass))]);
    expect(ran).toEqual([true, false]);
    expect(most).toBe(1);

    // A holder whose turn expired (it was paused; renewals stopped) sees `mine()` false before it writes.
    let stale: boolean | undefined;
    await t1.run(async (mine) => {
      await redis.del(streamKeys.judgeTurn); // as if it expired
      await redis.set(streamKeys.judgeTurn, 'w2|1', 'PX', TTL);
      stale = await mine();
    });
    expect(stale).toBe(false);
    expect(await redis.get(streamKeys.judgeTurn)).toBe('w2|1'); // the other holder's turn is left alone
  });
});
