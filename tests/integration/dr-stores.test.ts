import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import type { CustomerRecord } from '../../src/contracts/registry.js';
import { loadConfig, loadSection } from '../../src/shared/config.js';
import { closeRedis, createRedis, keys, type RedisClient } from '../../src/shared/redis.js';
import type { DrEventRecord } from '../../src/contracts/dr.js';
import { DrStore } from '../../src/shared/dr-store.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { type LocalRedisCluster, type LocalService, startRedis, startTestRedisCluster } from '../helpers/services.js';

/**
 * What demand response stores, on a single Redis and on a Redis Cluster: the registry's customer, feeder and
 * transformer indexes (kept by upsertMeters through moves, built once for records written before they existed) and
 * the event store (records, listing by start, idempotency keys).
 */

const rec = (meterId: string, customerId: string, feederId: string, transformerId: string): CustomerRecord => ({
  meterId,
  customerId,
  class: 'residential',
  tariff: 'default',
  contractKw: 5,
  feederId,
  transformerId,
  hasPv: false,
  intervalMinutes: 15,
});

const ids = (list: CustomerRecord[]): string[] => list.map((m) => m.meterId);
const defaults = loadSection('registry', RegistryConfig, {}).defaults;

describe.each(['single', 'cluster'] as const)('demand-response stores (%s Redis)', (kind) => {
  let single: LocalService | undefined;
  let cluster: LocalRedisCluster | undefined;
  let redis: RedisClient;

  beforeAll(async () => {
    if (kind === 'single') {
      single = await startRedis();
      redis = createRedis(single.url, 'test');
    } else {
      cluster = await startTestRedisCluster();
      redis = createRedis(loadConfig({ REDIS_CLUSTER_NODES: cluster.clusterNodes }).redis, 'test');
    }
  }, 120_000);

  afterAll(async () => {
    if (redis) await closeRedis(redis);
    await single?.destroy();
    await cluster?.destroy();
  });

  it('finds a customer’s, a feeder’s and a transformer’s meters, and follows a meter that moves', async () => {
    const store = new RegistryStore(redis, defaults);
    await store.upsertMeters([rec('M-1', 'C-1', 'F-1', 'T-1'), rec('M-2', 'C-1', 'F-1', 'T-2'), rec('M-3', 'C-2', 'F-2', 'T-3')]);
    expect(ids(await store.metersOfCustomer('C-1'))).toEqual(['M-1', 'M-2']);
    expect(ids(await store.metersOfFeeder('F-1'))).toEqual(['M-1', 'M-2']);
    expect(ids(await store.metersOfTransformer('T-2'))).toEqual(['M-2']);
    // M-2 moves to customer C-2 on feeder F-2, transformer T-3.
    await store.upsertMeters([rec('M-2', 'C-2', 'F-2', 'T-3')]);
    expect(ids(await store.metersOfCustomer('C-1'))).toEqual(['M-1']);
    expect(ids(await store.metersOfCustomer('C-2'))).toEqual(['M-2', 'M-3']);
    expect(ids(await store.metersOfFeeder('F-1'))).toEqual(['M-1']);
    expect(ids(await store.metersOfTransformer('T-2'))).toEqual([]);
    expect(ids(await store.metersOfTransformer('T-3'))).toEqual(['M-2', 'M-3']);
    // The old sets no longer hold it at all.
    expect(await redis.smembers(keys.registryIndex('customer', 'C-1'))).toEqual(['M-1']);
    expect(await redis.smembers(keys.registryIndex('transformer', 'T-2'))).toEqual([]);
    expect(await store.metersOfCustomer('C-none')).toEqual([]);
  });

  it('builds the indexes once for records registered before they existed; a stale member is filtered out', async () => {
    // As an older version wrote them: the hash only.
    await redis.hset(keys.registryMeters, {
      'M-OLD-1': JSON.stringify(rec('M-OLD-1', 'C-OLD', 'F-OLD', 'T-OLD')),
      'M-OLD-2': JSON.stringify(rec('M-OLD-2', 'C-OLD', 'F-OLD', 'T-OLD')),
    });
    await redis.del(keys.registryIndexed);
    const store = new RegistryStore(redis, defaults);
    expect(ids(await store.metersOfCustomer('C-OLD'))).toEqual(['M-OLD-1', 'M-OLD-2']);
    expect(ids(await store.metersOfFeeder('F-OLD'))).toEqual(['M-OLD-1', 'M-OLD-2']);
    expect(await redis.get(keys.registryIndexed)).toBe('1');
    // A crash between the add and the remove of a move leaves the old set holding the meter: the record decides.
    await redis.sadd(keys.registryIndex('customer', 'C-OLD'), 'M-1');
    expect(ids(await store.metersOfCustomer('C-OLD'))).toEqual(['M-OLD-1', 'M-OLD-2']);
  });

  it('events: create once, list latest start first, the ones starting in a range, and idempotency claims', async () => {
    const store = new DrStore(redis, 'mf');
    const ev = (id: string, startMs: number, customerIds: string[]): DrEventRecord => ({
      id,
      startMs,
      endMs: startMs + 3_600_000,
      selector: { customerIds },
      customerIds,
      requestedReductionKw: 10,
      createdAt: 1,
      createdBy: 'tok',
      notified: false,
      recordedAfter: true,
    });
    const T = Date.UTC(2026, 10, 18, 11);
    expect(await store.create(ev('event-aaaa', T, ['C-1']))).toBe(true);
    expect(await store.create(ev('event-bbbb', T + 86_400_000, ['C-2']))).toBe(true);
    expect(await store.create(ev('event-cccc', T - 86_400_000, ['C-1', 'C-2']))).toBe(true);
    expect(await store.create(ev('event-aaaa', T, ['C-9']))).toBe(false);
    expect((await store.get('event-aaaa'))?.customerIds).toEqual(['C-1']);
    const page = await store.list(2, 0);
    expect([page.items.map((e) => e.id), page.nextCursor]).toEqual([['event-bbbb', 'event-aaaa'], 2]);
    expect((await store.list(2, 2)).items.map((e) => e.id)).toEqual(['event-cccc']);
    expect((await store.startingBetween(T - 86_400_000, T + 86_400_000)).map((e) => e.id)).toEqual(['event-cccc', 'event-aaaa']);
    expect((await store.markNotified(ev('event-aaaa', T, ['C-1']))).notified).toBe(true);
    expect((await store.get('event-aaaa'))?.notified).toBe(true);
    expect(await store.claimIdempotency('tok', 'key-1', 'event-new1', 'fp-1')).toEqual({ kind: 'new' });
    expect(await store.claimIdempotency('tok', 'key-1', 'event-new2', 'fp-1')).toEqual({ kind: 'same', id: 'event-new1' });
    expect(await store.claimIdempotency('tok', 'key-1', 'event-new3', 'fp-2')).toEqual({ kind: 'conflict', id: 'event-new1' });
    // Per token: another token's key of the same text is its own.
    expect(await store.claimIdempotency('tok-2', 'key-1', 'event-new4', 'fp-2')).toEqual({ kind: 'new' });
    expect(await redis.ttl(store.keys.idem('tok', 'key-1'))).toBeGreaterThan(86_000);
    // A crash between the record and its index entry: the repeat lists it.
    await redis.zrem(store.keys.events, 'event-cccc');
    expect(await store.create(ev('event-cccc', T - 86_400_000, ['C-1', 'C-2']))).toBe(false);
    expect((await store.list(10, 0)).items.map((e) => e.id)).toEqual(['event-bbbb', 'event-aaaa', 'event-cccc']);
  });
});
