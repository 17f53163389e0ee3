import { backoffMs } from '../domain/backoff.js';
import { Cluster, Redis } from 'ioredis';
import type { RedisConfig } from './config.js';

export { shardOf } from '../domain/shard.js';

/** Key names; `{N}` hash tags keep a shard's keys in one Cluster slot so MULTI and Lua work across them. */
export const keys = {
  readings: (shard: number) => `mf:readings:{${shard}}`,
  seen: (shard: number, meterId: string) => `mf:seen:{${shard}}:${meterId}`,
  /** Hash per shard: `appended` = readings ingest appended (lag = appended − processed). */
  shardStats: (shard: number) => `mf:stats:{${shard}}`,
  dlq: 'mf:dlq',
  registryMeters: 'mf:registry:meters',
  registryTransformers: 'mf:registry:transformers',
  /** Set of the meterIds registered to a customer, feeder or transformer (a superset: readers check the record). */
  registryIndex: (kind: 'customer' | 'feeder' | 'transformer', id: string) => `mf:registry:by-${kind}:${id}`,
  /** Present once the indexes hold every meter registered before they existed. */
  registryIndexed: 'mf:registry:indexed',
  watermark: 'mf:watermark',
} as const;

/**
 * A connection to a single Redis or to a Redis Cluster: the code takes either. On a cluster every MULTI, Lua call,
 * multi-key command and pipeline must keep to one hash slot (see `keySlot`).
 */
export type RedisClient = Redis | Cluster;

/**
 * BullMQ's key prefix of one queue, `<base>:{<queue>}`: the queue's keys, which its Lua scripts touch together,
 * share one Cluster slot, and each queue has a slot of its own, so the queues spread over the masters. The same on a
 * single Redis (one key layout everywhere). `base` is `mf`; tests pass a unique one.
 */
export function queuePrefix(queue: string, base = 'mf'): string {
  if (/[{}]/.test(base) || /[{}:]/.test(queue)) throw new Error(`queuePrefix: no braces in "${base}", no braces or ':' in queue "${queue}"`);
  return `${base}:{${queue}}`;
}

/**
 * A connection per component. maxRetriesPerRequest=null: commands wait for a reconnect instead of failing,
 * which is what BullMQ needs and what the ingest wants (it stops acknowledging meanwhile). `failFast` (one-shot
 * CLI commands): a command fails after one retry, and a cluster that cannot be reached is given up after a few tries.
 * A URL string is a single Redis (tests); `config.redis` is a cluster when REDIS_CLUSTER_NODES is set.
 */
export function createRedis(target: string, name: string, opts?: { failFast?: boolean }): Redis;
export function createRedis(target: RedisConfig, name: string, opts?: { failFast?: boolean }): RedisClient;
export function createRedis(target: string | RedisConfig, name: string, opts: { failFast?: boolean } = {}): RedisClient {
  const maxRetriesPerRequest = opts.failFast ? 1 : null;
  const nodes = typeof target === 'string' ? undefined : target.clusterNodes;
  if (nodes !== undefined && nodes.length > 0) {
    return new Cluster(
      nodes.map((n) => ({ host: n.host, port: n.port })),
      {
        redisOptions: { connectionName: name, maxRetriesPerRequest },
        enableAutoPipelining: true,
        // Reads go to the masters too: the pipeline reads what it has just written (states, watermarks, queues).
        scaleReads: 'master',
        clusterRetryStrategy: (times) => (opts.failFast && times > 3 ? null : backoffMs(times, 50, 2000)),
        lazyConnect: false,
      },
    );
  }
  return new Redis(typeof target === 'string' ? target : target.url, {
    connectionName: name,
    maxRetriesPerRequest,
    enableAutoPipelining: true,
    retryStrategy: (times) => backoffMs(times, 50, 2000),
    lazyConnect: false,
  });
}

/** The masters of a cluster (once it knows its slots), or the one Redis: where a SCAN must run to see every key. */
export async function masters(r: RedisClient): Promise<Redis[]> {
  if (!(r instanceof Cluster)) return [r];
  // Commands wait in the offline queue until the cluster is ready: after this, its node pool is filled.
  if (r.status !== 'ready') await r.ping();
  return r.nodes('master');
}

/** Every key matching `match` (a SCAN pattern), on every master of a cluster; each batch as SCAN returns it. */
export async function* scanKeys(r: RedisClient, match = '*', count = 1000): AsyncGenerator<string[]> {
  for (const node of await masters(r)) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', match, 'COUNT', count);
      cursor = next;
      if (batch.length > 0) yield batch;
    } while (cursor !== '0');
  }
}

// CRC16/XMODEM (polynomial 0x1021), the hash of Redis Cluster's key slots.
const CRC16 = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let b = 0; b < 8; b++) c = c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1;
    t[i] = c & 0xffff;
  }
  return t;
})();

/**
 * The Cluster slot (0–16383) of a key: CRC16 of its hash tag (the text between the first `{` and the next `}`,
 * when not empty) or of the whole key, modulo 16384.
 */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  const hashed = close > open + 1 ? key.slice(open + 1, close) : key;
  let crc = 0;
  // Redis hashes the key's bytes: its UTF-8.
  for (const byte of Buffer.from(hashed, 'utf8')) crc = ((crc << 8) & 0xffff) ^ (CRC16[((crc >> 8) ^ byte) & 0xff] ?? 0);
  return crc & 0x3fff;
}

/**
 * The `Quarantine` of an InfluxDB writer: points InfluxDB refused go to the dead-letter stream, one entry per line
 * with reason `influx_rejected` and InfluxDB's own words, so a person can see, fix and replay them.
 */
export function influxQuarantine(redis: RedisClient, source: string, maxLen: number): (lines: string[], reason: string) => Promise<void> {
  return async (lines, reason) => {
    // One key: a cluster sends the pipeline to its node as it is.
    const p = redis.pipeline();
    const now = String(Date.now());
    for (const line of lines) {
      p.xadd(
        keys.dlq,
        'MAXLEN',
        '~',
        String(maxLen),
        '*',
        'reason',
        'influx_rejected',
        'detail',
        reason,
        'topic',
        'influx',
        'payload',
        line.slice(0, 4096),
        'ts',
        now,
        'source',
        source,
      );
    }
    await p.exec();
  };
}

/** Quit politely, fall back to disconnect when the server (or every node of a cluster) is gone. */
export async function closeRedis(r: RedisClient): Promise<void> {
  if (r.status === 'end') return;
  try {
    await Promise.race([r.quit(), new Promise((_, rej) => setTimeout(() => rej(new Error('quit timeout')), 1000))]);
  } catch {
    r.disconnect();
  }
}
