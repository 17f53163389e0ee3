import { Compile } from 'typebox/compile';
import { CustomerRecord, TransformerRecord } from '../contracts/registry.js';
import type { RegistryConfig } from '../contracts/config-registry.js';
import { keys, type RedisClient } from './redis.js';

const checkCustomer = Compile(CustomerRecord);
const checkTransformer = Compile(TransformerRecord);

export interface MeterInfo extends CustomerRecord {
  /** false when the meter is not in the registry and defaults were applied. */
  registered: boolean;
}

function parseStored<T>(raw: string | null | undefined, check: { Check(v: unknown): v is T }): T | undefined {
  if (raw === null || raw === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(raw);
    return check.Check(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

const INDEX_KINDS = ['customer', 'feeder', 'transformer'] as const;
type IndexKind = (typeof INDEX_KINDS)[number];

function indexValue(r: CustomerRecord, kind: IndexKind): string {
  return kind === 'customer' ? r.customerId : kind === 'feeder' ? r.feederId : r.transformerId;
}

/**
 * The customer and transformer registry, kept in two Redis hashes (id → JSON record), with a set of meterIds per
 * customer, feeder and transformer so a selection is found without reading the whole registry.
 */
export class RegistryStore {
  private indexing: Promise<void> | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly defaults: RegistryConfig['defaults'],
  ) {}

  withDefaults(meterId: string): MeterInfo {
    return { ...this.defaults, meterId, customerId: this.defaults.customerId.replace('{meterId}', meterId), registered: false };
  }

  async getMeter(meterId: string): Promise<MeterInfo> {
    const rec = parseStored(await this.redis.hget(keys.registryMeters, meterId), checkCustomer);
    return rec ? { ...rec, registered: true } : this.withDefaults(meterId);
  }

  async isRegistered(meterId: string): Promise<boolean> {
    return (await this.redis.hexists(keys.registryMeters, meterId)) === 1;
  }

  async getMeters(ids: string[]): Promise<Map<string, MeterInfo>> {
    const out = new Map<string, MeterInfo>();
    if (ids.length === 0) return out;
    const raw = await this.redis.hmget(keys.registryMeters, ...ids);
    ids.forEach((id, i) => {
      const rec = parseStored(raw[i], checkCustomer);
      out.set(id, rec ? { ...rec, registered: true } : this.withDefaults(id));
    });
    return out;
  }

  async allMeters(): Promise<CustomerRecord[]> {
    const all = await this.redis.hgetall(keys.registryMeters);
    const out: CustomerRecord[] = [];
    for (const raw of Object.values(all)) {
      const rec = parseStored(raw, checkCustomer);
      if (rec) out.push(rec);
    }
    return out;
  }

  /** A customer's meters (a replaced meter and its successor, several at one site), from its index set. */
  metersOfCustomer(customerId: string): Promise<CustomerRecord[]> {
    return this.indexed('customer', customerId);
  }

  metersOfFeeder(feederId: string): Promise<CustomerRecord[]> {
    return this.indexed('feeder', feederId);
  }

  metersOfTransformer(transformerId: string): Promise<CustomerRecord[]> {
    return this.indexed('transformer', transformerId);
  }

  /**
   * The meters in one index set whose record still says so, sorted by meterId. The sets are kept as supersets
   * (members are added before a record is written and removed after it moved), so a crash in between leaves a stale
   * member that this filters out, never a missing one.
   */
  private async indexed(kind: IndexKind, id: string): Promise<CustomerRecord[]> {
    await this.ensureIndexes();
    const ids = (await this.redis.smembers(keys.registryIndex(kind, id))).sort();
    if (ids.length === 0) return [];
    const raw = await this.redis.hmget(keys.registryMeters, ...ids);
    const out: CustomerRecord[] = [];
    for (const r of raw) {
      const rec = parseStored(r, checkCustomer);
      if (rec !== undefined && indexValue(rec, kind) === id) out.push(rec);
    }
    return out;
  }

  /** Builds the indexes once from the records registered before they existed (one HGETALL, then the marker). */
  private ensureIndexes(): Promise<void> {
    this.indexing ??= (async () => {
      if ((await this.redis.exists(keys.registryIndexed)) === 1) return;
      await this.addToIndexes(await this.allMeters());
      await this.redis.set(keys.registryIndexed, '1');
    })().catch((err: unknown) => {
      this.indexing = undefined;
      throw err;
    });
    return this.indexing;
  }

  /** SADD per index key: one key per command, so it works on a cluster as on one Redis. */
  private async addToIndexes(records: readonly CustomerRecord[]): Promise<void> {
    const members = new Map<string, string[]>();
    for (const r of records) {
      for (const kind of INDEX_KINDS) {
        const key = keys.registryIndex(kind, indexValue(r, kind));
        const list = members.get(key);
        if (list === undefined) members.set(key, [r.meterId]);
        else list.push(r.meterId);
      }
    }
    // In chunks: a feeder of a large registry has far more members than one command should carry.
    const commands = [...members].flatMap(([key, ids]) =>
      Array.from({ length: Math.ceil(ids.length / 10_000) }, (_, i) => [key, ids.slice(i * 10_000, (i + 1) * 10_000)] as const),
    );
    await Promise.all(commands.map(([key, ids]) => this.redis.sadd(key, ...ids)));
  }

  async getTransformer(transformerId: string): Promise<TransformerRecord | undefined> {
    return parseStored(await this.redis.hget(keys.registryTransformers, transformerId), checkTransformer);
  }

  async allTransformers(): Promise<TransformerRecord[]> {
    const all = await this.redis.hgetall(keys.registryTransformers);
    const out: TransformerRecord[] = [];
    for (const raw of Object.values(all)) {
      const rec = parseStored(raw, checkTransformer);
      if (rec) out.push(rec);
    }
    return out;
  }

  /**
   * Writes the records and keeps the customer, feeder and transformer indexes: the new memberships are added before
   * the records are written, and a meter that moved is removed from its old sets after.
   */
  async upsertMeters(records: CustomerRecord[]): Promise<number> {
    for (let i = 0; i < records.length; i += 1000) {
      const chunk = records.slice(i, i + 1000);
      const before = await this.redis.hmget(keys.registryMeters, ...chunk.map((r) => r.meterId));
      await this.addToIndexes(chunk);
      await this.redis.hset(keys.registryMeters, Object.fromEntries(chunk.map((r) => [r.meterId, JSON.stringify(r)])));
      const stale = new Map<string, string[]>();
      chunk.forEach((r, j) => {
        const old = parseStored(before[j], checkCustomer);
        if (old === undefined) return;
        for (const kind of INDEX_KINDS) {
          if (indexValue(old, kind) === indexValue(r, kind)) continue;
          const key = keys.registryIndex(kind, indexValue(old, kind));
          stale.set(key, [...(stale.get(key) ?? []), r.meterId]);
        }
      });
      await Promise.all([...stale].map(([key, ids]) => this.redis.srem(key, ...ids)));
    }
    return records.length;
  }

  async upsertTransformers(records: TransformerRecord[]): Promise<number> {
    if (records.length === 0) return 0;
    await this.redis.hset(keys.registryTransformers, Object.fromEntries(records.map((r) => [r.transformerId, JSON.stringify(r)])));
    return records.length;
  }
}
