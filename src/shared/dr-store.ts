import { Compile } from 'typebox/compile';
import { DrEventRecord } from '../contracts/dr.js';
import type { RedisClient } from './redis.js';

const checkEvent = Compile(DrEventRecord);

/**
 * Demand-response events in Redis. Every key shares the `{dr}` hash tag, so MGET and a page of records work on a
 * Redis Cluster as on one Redis:
 * - `<prefix>:{dr}:event:<id>`: the record (JSON);
 * - `<prefix>:{dr}:events`: sorted set of ids by event start (listing, and the other events' windows settlement skips);
 * - `<prefix>:{dr}:idem:<tokenId>:<key>`: `<eventId> <fingerprint>` for an Idempotency-Key, kept `IDEMPOTENCY_TTL_S`.
 */
export const IDEMPOTENCY_TTL_S = 86_400;

export type Claim = { kind: 'new' } | { kind: 'same'; id: string } | { kind: 'conflict'; id: string };

function parse(raw: string | null | undefined): DrEventRecord | undefined {
  if (raw === null || raw === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(raw);
    return checkEvent.Check(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

export class DrStore {
  readonly keys: { event: (id: string) => string; events: string; idem: (tokenId: string, key: string) => string };

  constructor(
    private readonly redis: RedisClient,
    prefix = 'mf',
  ) {
    this.keys = {
      event: (id) => `${prefix}:{dr}:event:${id}`,
      events: `${prefix}:{dr}:events`,
      idem: (tokenId, key) => `${prefix}:{dr}:idem:${tokenId}:${key}`,
    };
  }

  /**
   * Binds an idempotency key (already hashed by the caller) of one token to an event id and the request's
   * fingerprint: `new` the first time, `same` for a repeat of the same request, `conflict` for another request.
   */
  async claimIdempotency(tokenId: string, key: string, id: string, fingerprint: string): Promise<Claim> {
    const k = this.keys.idem(tokenId, key);
    const set = await this.redis.set(k, `${id} ${fingerprint}`, 'EX', IDEMPOTENCY_TTL_S, 'NX');
    if (set === 'OK') return { kind: 'new' };
    const [prevId = '', prevFp = ''] = ((await this.redis.get(k)) ?? '').split(' ');
    return prevFp === fingerprint ? { kind: 'same', id: prevId } : { kind: 'conflict', id: prevId };
  }

  /**
   * Stores a new event; false when one with its id exists already (the record is left as it was). The record is
   * written before its index entry, so a repeat after a crash in between lists it then (ZADD is idempotent).
   */
  async create(e: DrEventRecord): Promise<boolean> {
    const set = await this.redis.set(this.keys.event(e.id), JSON.stringify(e), 'NX');
    const stored = set === 'OK' ? e : await this.get(e.id);
    if (stored !== undefined) await this.redis.zadd(this.keys.events, stored.startMs, stored.id);
    return set === 'OK';
  }

  async get(id: string): Promise<DrEventRecord | undefined> {
    return parse(await this.redis.get(this.keys.event(id)));
  }

  async markNotified(e: DrEventRecord): Promise<DrEventRecord> {
    const next = { ...e, notified: true };
    await this.redis.set(this.keys.event(e.id), JSON.stringify(next), 'XX');
    return next;
  }

  private async records(ids: readonly string[]): Promise<DrEventRecord[]> {
    if (ids.length === 0) return [];
    const raws = await this.redis.mget(...ids.map((id) => this.keys.event(id)));
    return raws.map(parse).filter((e): e is DrEventRecord => e !== undefined);
  }

  /** Latest start first; the cursor is an offset. */
  async list(limit: number, offset: number): Promise<{ items: DrEventRecord[]; nextCursor: number | null }> {
    const ids = await this.redis.zrevrange(this.keys.events, offset, offset + limit);
    return { items: await this.records(ids.slice(0, limit)), nextCursor: ids.length > limit ? offset + limit : null };
  }

  /** Events starting in [fromMs, toMs), earliest first. */
  async startingBetween(fromMs: number, toMs: number): Promise<DrEventRecord[]> {
    return this.records(await this.redis.zrangebyscore(this.keys.events, fromMs, `(${toMs}`));
  }
}
