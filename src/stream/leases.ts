import { fnv1a32 } from '../domain/shard.js';
import type { Logger } from '../shared/logger.js';
import type { RedisClient } from '../shared/redis.js';
import { LuaScript } from '../shared/lua.js';
import { streamKeys } from './keys.js';

/**
 * Lease-based shard ownership. A stream worker works on a shard only while it holds the shard's lease
 * (`mf:lease:{N}` = `<consumer>|<token>`, with a TTL) and renews it every third of the TTL from a timer of its own,
 * so a long batch does not lose it. A worker that dies or stops renewing loses the lease when it expires, and
 * another worker takes the shard over. The token (an INCR of `mf:lease:{N}:fence` at each acquisition) fences the
 * old owner: every read of a shard's stream and every checkpoint of it is a script that first checks that the lease
 * still holds the worker's token (`FencedError` otherwise), so a worker paused past its lease can neither read new
 * entries nor store a checkpoint once it resumes. Its other outputs are idempotent (InfluxDB overwrites, event and
 * recompute job ids), and the new owner replays from the last stored checkpoint.
 *
 * Balance: each worker heartbeats in `mf:stream:workers` (a sorted set scored by expiry) and aims at
 * ceil(shards / live workers) shards; it takes free shards in its own rendezvous order (FNV of consumer and shard,
 * so workers prefer different shards) and hands back the ones over its share, after a checkpoint. With
 * WORKER_INDEX/WORKER_COUNT the candidate shards are fixed instead (static assignment, still fenced).
 */

export class FencedError extends Error {
  override name = 'FencedError';
  constructor(readonly shard: number) {
    super(`shard ${shard}: the lease is held by another worker (this worker lost it)`);
  }
}

const ACQUIRE = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
`);

const RENEW = new LuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`);

const RELEASE = new LuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`);

/** Fenced XREADGROUP of one shard. KEYS: lease, stream. ARGV: lease value, group, consumer, count, id. */
export const FENCED_READ = new LuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED') end
return redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[2], ARGV[5])
`);

/**
 * Fenced checkpoint of one shard: the changed meters' states, the watermark, XACK + XDEL of the processed entries.
 * KEYS: lease, state hash, meta hash, stream. ARGV: lease value, group, watermark, number of states, then
 * meterId/state pairs, then the entry ids. Commands are issued in chunks (Lua's unpack has a stack limit).
 */
export const FENCED_CHECKPOINT = new LuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED') end
local n = tonumber(ARGV[4])
local first, last = 5, 4 + 2 * n
for i = first, last, 400 do
  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 399, last)))
end
redis.call('HSET', KEYS[3], 'wm', ARGV[3])
for i = last + 1, #ARGV, 500 do
  local j = math.min(i + 499, #ARGV)
  redis.call('XACK', KEYS[4], ARGV[2], unpack(ARGV, i, j))
  redis.call('XDEL', KEYS[4], unpack(ARGV, i, j))
end
return 1
`);

/**
 * A short exclusive turn across workers (e.g. judging the fleet's load, which reads and writes keys of every
 * transformer and must not interleave with another worker's pass): SET NX with a TTL, given back only by its holder.
 */
export class Turn {
  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
    private readonly owner: string,
    private readonly ttlMs: number,
  ) {}

  /**
   * Runs `fn` if no other worker holds the turn; returns whether it ran. `fn` gets `mine()`, which it calls before
   * it writes: false once the turn has passed to another worker (this one was paused past the TTL), and then it
   * must write nothing of what it computed.
   */
  async run(fn: (mine: () => Promise<boolean>) => Promise<void>): Promise<boolean> {
    const value = `${this.owner}|${Date.now()}`;
    if ((await this.redis.set(this.key, value, 'PX', this.ttlMs, 'NX')) !== 'OK') return false;
    // Renewed while it runs: a pass longer than the TTL must not let another worker's pass interleave with it.
    const renew = setInterval(() => void RENEW.run(this.redis, [this.key], [value, this.ttlMs]).catch(() => undefined), Math.max(50, this.ttlMs / 3));
    try {
      await fn(async () => (await this.redis.get(this.key)) === value);
    } finally {
      clearInterval(renew);
      await RELEASE.run(this.redis, [this.key], [value]);
    }
    return true;
  }
}

/** A fenced script's error (Redis 7 answers `ERR FENCED`, others `FENCED`). */
export const isFenced = (err: unknown): boolean => err instanceof Error && /(^|\s)FENCED$/.test(err.message);

export interface LeaseOptions {
  redis: RedisClient;
  consumer: string;
  shards: number;
  /** Fixed candidate shards (WORKER_INDEX/WORKER_COUNT), or undefined to balance over all of them. */
  fixed: readonly number[] | undefined;
  ttlMs: number;
  log: Logger;
  now?: () => number;
}

/** What the worker must do with its shards: take over `acquired`, drop `lost` at once, hand back `surplus` after a checkpoint. */
export interface LeaseChanges {
  acquired: number[];
  lost: number[];
  surplus: number[];
}

export class ShardLeases {
  /** Shard → the lease value this worker holds (`consumer|token`). */
  private readonly held = new Map<number, string>();
  /** Shards whose renewal failed since the worker last asked. */
  private readonly lostSince = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(private readonly o: LeaseOptions) {
    this.now = o.now ?? Date.now;
  }

  /** The lease value of a shard this worker holds, or undefined. */
  value(shard: number): string | undefined {
    return this.held.get(shard);
  }

  owned(): number[] {
    return [...this.held.keys()].sort((a, b) => a - b);
  }

  /** Starts renewing (every ttl/3) and heartbeating; errors are logged and retried at the next round. */
  start(): void {
    this.timer ??= setInterval(
      () => void this.renew().catch((err: unknown) => this.o.log.warn({ err }, 'lease renewal failed')),
      Math.max(50, this.o.ttlMs / 3),
    );
  }

  /** Renews every held lease; a lease another worker now holds (or that expired) is lost. */
  async renew(): Promise<void> {
    await this.heartbeat();
    await Promise.all(
      [...this.held].map(async ([shard, value]) => {
        const ok = await RENEW.run(this.o.redis, [streamKeys.lease(shard)], [value, this.o.ttlMs]);
        if (Number(ok) !== 1 && this.held.get(shard) === value) this.lose(shard);
      }),
    );
  }

  /** Marks a shard lost (renewal failed, or a fenced read or checkpoint). */
  lose(shard: number): void {
    if (!this.held.delete(shard)) return;
    this.lostSince.add(shard);
    this.o.log.warn({ shard, consumer: this.o.consumer }, 'shard lease lost: another worker owns the shard now');
  }

  /** One balancing round: leases lost since the last round, shards taken (free ones, up to this worker's share), and the surplus. */
  async rebalance(): Promise<LeaseChanges> {
    await this.heartbeat();
    const lost = [...this.lostSince];
    this.lostSince.clear();
    const candidates = this.candidates();
    const target = await this.target(candidates.length);
    const acquired: number[] = [];
    for (const shard of candidates) {
      if (this.held.size >= target) break;
      if (this.held.has(shard)) continue;
      const token = await ACQUIRE.run(this.o.redis, [streamKeys.lease(shard), streamKeys.fence(shard)], [this.o.consumer, this.o.ttlMs]);
      if (token === null || token === undefined) continue;
      this.held.set(shard, `${this.o.consumer}|${String(token)}`);
      acquired.push(shard);
    }
    // Over the share: the least preferred go back (static assignment never has any).
    const mine = candidates.filter((s) => this.held.has(s));
    const surplus = this.o.fixed === undefined ? mine.slice(target) : [];
    if (acquired.length > 0) this.o.log.info({ acquired, consumer: this.o.consumer, target }, 'shard leases taken');
    return { acquired, lost, surplus };
  }

  /** Hands a shard back (after its checkpoint), so another worker can take it at once. */
  async release(shard: number): Promise<void> {
    const value = this.held.get(shard);
    if (value === undefined) return;
    this.held.delete(shard);
    await RELEASE.run(this.o.redis, [streamKeys.lease(shard)], [value]);
    this.o.log.info({ shard, consumer: this.o.consumer }, 'shard lease handed back');
  }

  /** Stops renewing, hands every lease back and leaves the worker set (graceful stop, after the last checkpoint). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const shard of this.owned()) await this.release(shard);
    await this.o.redis.zrem(streamKeys.workers, this.o.consumer);
  }

  /** This worker's preference order: fixed shards as given, else all shards in rendezvous order. */
  private candidates(): number[] {
    if (this.o.fixed !== undefined) return [...this.o.fixed];
    const all = Array.from({ length: this.o.shards }, (_, s) => s);
    return all.sort((a, b) => fnv1a32(`${this.o.consumer}:${b}`) - fnv1a32(`${this.o.consumer}:${a}`) || a - b);
  }

  /** Shards this worker should own: all its fixed ones, or its share of all shards among the live workers. */
  private async target(candidates: number): Promise<number> {
    if (this.o.fixed !== undefined) return candidates;
    const live = Math.max(1, await this.o.redis.zcount(streamKeys.workers, this.now(), '+inf'));
    return Math.ceil(this.o.shards / live);
  }

  private async heartbeat(): Promise<void> {
    const now = this.now();
    await this.o.redis.zadd(streamKeys.workers, now + this.o.ttlMs, this.o.consumer);
    await this.o.redis.zremrangebyscore(streamKeys.workers, '-inf', now);
  }
}
