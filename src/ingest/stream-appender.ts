import type { MeterEvent, Reading } from '../contracts/reading.js';
import { LuaScript } from '../shared/lua.js';
import { keys, shardOf, type RedisClient } from '../shared/redis.js';

/**
 * Dedup + append in one atomic script per shard: a reading is either both remembered and appended, or neither,
 * so a crash between the two can never turn a redelivery into a "duplicate" that was never stored.
 * The seen-set of a meter (`mf:seen:{N}:<meter>`) is a sorted set scored by event time: reading timestamps as
 * members, and meter events as `e` + their JSON (a redelivered last gasp or exchange order is appended once). It
 * remembers a span of event time (`windowMs` back from the meter's newest entry in the call), whatever the
 * meter's interval or backlog size, and its TTL is refreshed on every write that adds to it, so a slow meter's
 * set never expires while the meter is alive.
 * KEYS: stream, the shard's stats hash, then one seen-set per item. ARGV: rx, windowMs, ttlSeconds, then
 * score/member/json triples. Readings are appended as `r`, events as `e`. The stats hash counts readings appended
 * (`appended`), which gives stream lag and benchmarks. Returns a string of '1' (appended) / '0' (duplicate), one per item.
 */
const APPEND = new LuaScript(`
local rx, win, ttl, field = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local fresh, flags, newest, adds = {}, {}, {}, {}
for i = 3, #KEYS do
  local key = KEYS[i]
  local at = 2 + 3 * (i - 2)
  local ts = ARGV[at]
  if redis.call('ZADD', key, 'NX', ts, ARGV[at + 1]) == 1 then
    fresh[#fresh + 1] = ARGV[at + 2]
    flags[#flags + 1] = '1'
    local t = tonumber(ts)
    if newest[key] == nil or t > newest[key] then newest[key] = t end
    adds[key] = (adds[key] or 0) + 1
  else
    flags[#flags + 1] = '0'
  end
end
for key, t in pairs(newest) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', t - win))
  -- A backlog added before the trim can push the set past Redis' compact (listpack) size, and Redis never converts
  -- back: rewrite it once it fits again (5x less memory for a 15-min meter).
  if adds[key] > 1 and redis.call('ZCARD', key) <= 128 and redis.call('OBJECT', 'ENCODING', key) == 'skiplist' then
    local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    redis.call('DEL', key)
    for j = 1, #all, 2 do redis.call('ZADD', key, all[j + 1], all[j]) end
  end
  redis.call('EXPIRE', key, ttl)
end
if #fresh > 0 then
  redis.call('XADD', KEYS[1], '*', field, '[' .. table.concat(fresh, ',') .. ']', 'rx', rx)
  if field == 'r' then redis.call('HINCRBY', KEYS[2], 'appended', #fresh) end
end
return table.concat(flags)
`);

/** Readings per script call. */
const MAX_PER_CALL = 1000;

export interface AppendResult {
  appended: number;
  duplicates: Reading[];
}

export interface DedupOptions {
  /** Span of event time remembered per meter, back from its newest reading or event. */
  windowMs: number;
  /** Idle time after which a meter's seen-set is dropped (refreshed on every write). */
  ttlSeconds: number;
}

export class StreamAppender {
  constructor(
    private readonly redis: RedisClient,
    private readonly shards: number,
    private readonly dedup: DedupOptions,
  ) {}

  /**
   * Appends readings grouped by shard. Calls made in the same tick are coalesced into one script call per
   * shard (one round trip for many MQTT messages); each caller still learns which of its own readings were new.
   */
  appendReadings(readings: Reading[], rxMs: number): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      this.pending.push({ readings, rxMs, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private pending: Array<{ readings: Reading[]; rxMs: number; resolve: (r: AppendResult) => void; reject: (e: unknown) => void }> = [];
  private scheduled = false;

  private async flush(): Promise<void> {
    const calls = this.pending;
    this.pending = [];
    this.scheduled = false;
    const rxMs = Math.max(...calls.map((c) => c.rxMs));
    // Per shard: the readings in arrival order, and where each came from.
    const byShard = new Map<number, Array<{ r: Reading; call: number; idx: number }>>();
    calls.forEach((c, call) => {
      c.readings.forEach((r, idx) => {
        const s = shardOf(r.meterId, this.shards);
        const list = byShard.get(s);
        if (list) list.push({ r, call, idx });
        else byShard.set(s, [{ r, call, idx }]);
      });
    });
    const fresh = calls.map((c) => new Array<boolean>(c.readings.length).fill(false));
    try {
      // Bounded script calls: a long script blocks Redis for everyone else.
      const chunks: Array<[number, Array<{ r: Reading; call: number; idx: number }>]> = [];
      for (const [shard, list] of byShard) {
        for (let i = 0; i < list.length; i += MAX_PER_CALL) chunks.push([shard, list.slice(i, i + MAX_PER_CALL)]);
      }
      await Promise.all(
        chunks.map(async ([shard, list]) => {
          const scriptKeys = [keys.readings(shard), keys.shardStats(shard)];
          for (const { r } of list) scriptKeys.push(keys.seen(shard, r.meterId));
          const args: Array<string | number> = [rxMs, this.dedup.windowMs, this.dedup.ttlSeconds, 'r'];
          for (const { r } of list) args.push(r.ts, r.ts, JSON.stringify(r));
          const flags = String(await APPEND.run(this.redis, scriptKeys, args));
          list.forEach(({ call, idx }, i) => {
            const row = fresh[call];
            if (row) row[idx] = flags[i] === '1';
          });
        }),
      );
    } catch (err) {
      for (const c of calls) c.reject(err);
      return;
    }
    calls.forEach((c, i) => {
      const row = fresh[i] ?? [];
      c.resolve({ appended: row.filter(Boolean).length, duplicates: c.readings.filter((_, j) => !row[j]) });
    });
  }

  /**
   * Meter events go to the meter's shard too, so the worker sees them in order with its readings; deduplicated
   * like readings (a redelivery appends nothing). Resolves to how many were new.
   */
  async appendEvents(events: MeterEvent[], rxMs: number): Promise<number> {
    const byShard = new Map<number, MeterEvent[]>();
    for (const e of events) {
      const s = shardOf(e.meterId, this.shards);
      const list = byShard.get(s);
      if (list) list.push(e);
      else byShard.set(s, [e]);
    }
    const fresh = await Promise.all(
      [...byShard].map(async ([shard, list]) => {
        const scriptKeys = [keys.readings(shard), keys.shardStats(shard)];
        for (const e of list) scriptKeys.push(keys.seen(shard, e.meterId));
        const args: Array<string | number> = [rxMs, this.dedup.windowMs, this.dedup.ttlSeconds, 'e'];
        for (const e of list) {
          const json = JSON.stringify(e);
          args.push(e.ts, `e${json}`, json);
        }
        const flags = String(await APPEND.run(this.redis, scriptKeys, args));
        return [...flags].filter((f) => f === '1').length;
      }),
    );
    return fresh.reduce((a, n) => a + n, 0);
  }
}
