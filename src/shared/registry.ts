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

/** The customer and transformer registry, kept in two Redis hashes (id → JSON record). */
export class RegistryStore {
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

  async metersOfTransformer(transformerId: string): Promise<CustomerRecord[]> {
    return (await this.allMeters()).filter((m) => m.transformerId === transformerId);
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

  async upsertMeters(records: CustomerRecord[]): Promise<number> {
    for (let i = 0; i < records.length; i += 1000) {
      const chunk = records.slice(i, i + 1000);
      await this.redis.hset(keys.registryMeters, Object.fromEntries(chunk.map((r) => [r.meterId, JSON.stringify(r)])));
    }
    return records.length;
  }

  async upsertTransformers(records: TransformerRecord[]): Promise<number> {
    if (records.length === 0) return 0;
    await this.redis.hset(keys.registryTransformers, Object.fromEntries(records.map((r) => [r.transformerId, JSON.stringify(r)])));
    return records.length;
  }
}
