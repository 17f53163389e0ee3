import { billingKeys } from '../shared/billing-store.js';
import { keys, type RedisClient } from '../shared/redis.js';
import { LuaScript } from '../shared/lua.js';

/** Billing progress in Redis: the closed days per time zone and the closed periods. */
export interface BillingState {
  /** Min over the stream shards' event-time watermarks; undefined before any shard has one. */
  watermark(): Promise<number | undefined>;
  lastClosedDay(timezone: string): Promise<string | undefined>;
  /** Moves the zone's closed day forward (never back). */
  markDayClosed(timezone: string, day: string): Promise<void>;
  /** 'closing' while the period is being computed, then the epoch ms it closed; undefined if never. */
  periodState(timezone: string, period: string): Promise<'closing' | number | undefined>;
  markPeriod(timezone: string, period: string, state: 'closing' | number): Promise<void>;
  /** The month's customer profiles: 'closing' while written, 'dirty' when late data changed a day since, then epoch ms. */
  monthState(timezone: string, month: string): Promise<MonthState | undefined>;
  markMonth(timezone: string, month: string, state: 'closing' | 'dirty'): Promise<void>;
  /** Marks the month profiled at `at` only if still 'closing' (no late data meanwhile); false otherwise. */
  finishMonth(timezone: string, month: string, at: number): Promise<boolean>;
  /** Months marked 'dirty': late data changed one of their days since they were last profiled. */
  dirtyMonths(): Promise<{ timezone: string; month: string }[]>;
}

export type MonthState = 'closing' | 'dirty' | number;

// Days are YYYY-MM-DD, so string order is date order.
const SET_IF_LATER = new LuaScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (not cur) or cur < ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1`);

const SET_IF_CLOSING = new LuaScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == 'closing' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1 end
return 0`);

export function parseMonthState(v: string | null | undefined): MonthState | undefined {
  return v === 'dirty' ? 'dirty' : parsePeriodState(v);
}

export function parsePeriodState(v: string | null | undefined): 'closing' | number | undefined {
  if (v === null || v === undefined) return undefined;
  if (v === 'closing') return 'closing';
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

export function redisBillingState(redis: RedisClient): BillingState {
  return {
    async watermark() {
      const values = await redis.hvals(keys.watermark);
      let min: number | undefined;
      for (const v of values) {
        const n = Number(v);
        if (Number.isFinite(n) && (min === undefined || n < min)) min = n;
      }
      return min;
    },
    async lastClosedDay(timezone) {
      return (await redis.hget(billingKeys.closedDays, timezone)) ?? undefined;
    },
    async markDayClosed(timezone, day) {
      await SET_IF_LATER.run(redis, [billingKeys.closedDays], [timezone, day]);
    },
    async periodState(timezone, period) {
      return parsePeriodState(await redis.hget(billingKeys.closedPeriods, `${timezone}|${period}`));
    },
    async markPeriod(timezone, period, state) {
      await redis.hset(billingKeys.closedPeriods, `${timezone}|${period}`, String(state));
    },
    async monthState(timezone, month) {
      return parseMonthState(await redis.hget(billingKeys.profiledMonths, `${timezone}|${month}`));
    },
    async markMonth(timezone, month, state) {
      await redis.hset(billingKeys.profiledMonths, `${timezone}|${month}`, state);
    },
    async finishMonth(timezone, month, at) {
      return (await SET_IF_CLOSING.run(redis, [billingKeys.profiledMonths], [`${timezone}|${month}`, String(at)])) === 1;
    },
    async dirtyMonths() {
      // One entry per zone and month ever profiled: a few hundred in a decade.
      const all = await redis.hgetall(billingKeys.profiledMonths);
      return Object.entries(all)
        .filter(([, v]) => v === 'dirty')
        .map(([k]) => ({ timezone: k.slice(0, k.lastIndexOf('|')), month: k.slice(k.lastIndexOf('|') + 1) }));
    },
  };
}
