import type { Redis, Result } from 'ioredis';
import type { MeterEvent, Reading } from '../contracts/reading.js';
import { keys, shardOf } from '../shared/redis.js';

/**
 * Dedup + append in one atomic script per shard: a reading is either both remembered and appended, or neither,
 * so a crash between the two can never turn a redelivery into a "duplicate" that was never stored.
 * KEYS: stream, then one seen-set per reading. ARGV: rx, windowMs, maxPerMeter, ttlSeconds, then ts/json pairs.
 * Returns a string of '1' (appended) / '0' (duplicate), one per reading.
 */
const APPEND_LUA = `
local rx, window, maxn, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local fresh, flags = {}, {}
for i = 2, #KEYS do
  local ts = ARGV[3 + 2 * (i - 1)]
  local json = ARGV[4 + 2 * (i - 1)]
  local key = KEYS[i]
  if redis.call('ZADD', key, 'NX', ts, ts) == 1 then
    fresh[#fresh + 1] = json
    flags[#flags + 1] = '1'
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (tonumber(newest) - window))
    if redis.call('ZCARD', key) > maxn then redis.call('ZREMRANGEBYRANK', key, 0, -(maxn + 1)) end
    redis.call('EXPIRE', key, ttl)
  else
    flags[#flags + 1] = '0'
  end
end
if #fresh > 0 then
  redis.call('XADD', KEYS[1], '*', 'r', '[' .. table.concat(fresh, ',') .. ']', 'rx', rx)
end
return table.concat(flags)
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    mfAppend(numKeys: number, ...args: Array<string | number>): Result<string, Context>;
  }
}

export interface AppendResult {
  appended: number;
  duplicates: Reading[];
}

export interface DedupOptions {
  windowMs: number;
  maxPerMeter: number;
  ttlSeconds: number;
}

export class StreamAppender {
  constructor(
    private readonly redis: Redis,
    private readonly shards: number,
    private readonly dedup: DedupOptions,
  ) {
    if (typeof redis.mfAppend !== 'function') redis.defineCommand('mfAppend', { lua: APPEND_LUA });
  }

  /** Appends readings grouped by shard (one script call per shard, pipelined by ioredis). */
  async appendReadings(readings: Reading[], rxMs: number): Promise<AppendResult> {
    const byShard = new Map<number, Reading[]>();
    for (const r of readings) {
      const s = shardOf(r.meterId, this.shards);
      const list = byShard.get(s);
      if (list) list.push(r);
      else byShard.set(s, [r]);
    }
    const calls = [...byShard].map(async ([shard, list]) => {
      const args: Array<string | number> = [keys.readings(shard)];
      for (const r of list) args.push(keys.seen(shard, r.meterId));
      args.push(rxMs, this.dedup.windowMs, this.dedup.maxPerMeter, this.dedup.ttlSeconds);
      for (const r of list) args.push(r.ts, JSON.stringify(r));
      const flags = await this.redis.mfAppend(list.length + 1, ...args);
      return { list, flags };
    });
    let appended = 0;
    const duplicates: Reading[] = [];
    for (const { list, flags } of await Promise.all(calls)) {
      list.forEach((r, i) => {
        if (flags[i] === '1') appended++;
        else duplicates.push(r);
      });
    }
    return { appended, duplicates };
  }

  /** Meter events go to the meter's shard too, so the worker sees them in order with its readings. */
  async appendEvents(events: MeterEvent[], rxMs: number): Promise<void> {
    const byShard = new Map<number, MeterEvent[]>();
    for (const e of events) {
      const s = shardOf(e.meterId, this.shards);
      byShard.set(s, [...(byShard.get(s) ?? []), e]);
    }
    await Promise.all([...byShard].map(([shard, list]) => this.redis.xadd(keys.readings(shard), '*', 'e', JSON.stringify(list), 'rx', String(rxMs))));
  }
}
