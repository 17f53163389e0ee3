import { backoffMs } from '../domain/backoff.js';
import { Redis } from 'ioredis';

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
  watermark: 'mf:watermark',
} as const;

/**
 * A connection per component. maxRetriesPerRequest=null: commands wait for a reconnect instead of failing,
 * which is what BullMQ needs and what the ingest wants (it stops acknowledging meanwhile).
 */
export function createRedis(url: string, name: string, opts: { failFast?: boolean } = {}): Redis {
  return new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: opts.failFast ? 1 : null,
    enableAutoPipelining: true,
    retryStrategy: (times) => backoffMs(times, 50, 2000),
    lazyConnect: false,
  });
}

/**
 * The `Quarantine` of an InfluxDB writer: points InfluxDB refused go to the dead-letter stream, one entry per line
 * with reason `influx_rejected` and InfluxDB's own words, so a person can see, fix and replay them.
 */
export function influxQuarantine(redis: Redis, source: string, maxLen: number): (lines: string[], reason: string) => Promise<void> {
  return async (lines, reason) => {
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

/** Quit politely, fall back to disconnect when the server is gone. */
export async function closeRedis(r: Redis): Promise<void> {
  if (r.status === 'end') return;
  try {
    await Promise.race([r.quit(), new Promise((_, rej) => setTimeout(() => rej(new Error('quit timeout')), 1000))]);
  } catch {
    r.disconnect();
  }
}
