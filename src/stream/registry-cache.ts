import type { TransformerRecord } from '../contracts/registry.js';
import type { RegistryStore } from '../shared/registry.js';
import type { MeterRecord } from './shard-work.js';

/** Registry lookups, cached for a minute so registry edits reach a running worker. */
export class RegistryCache {
  private readonly meters = new Map<string, { rec: MeterRecord; at: number }>();
  private readonly transformers = new Map<string, { rec: TransformerRecord | undefined; at: number }>();
  constructor(
    private readonly store: RegistryStore,
    private readonly ttlMs: number,
  ) {}

  async getMeters(ids: string[]): Promise<Map<string, MeterRecord>> {
    const now = Date.now();
    const out = new Map<string, MeterRecord>();
    const missing: string[] = [];
    for (const id of ids) {
      const hit = this.meters.get(id);
      if (hit !== undefined && now - hit.at < this.ttlMs) out.set(id, hit.rec);
      else missing.push(id);
    }
    if (missing.length > 0) {
      for (const [id, rec] of await this.store.getMeters(missing)) {
        this.meters.set(id, { rec, at: now });
        out.set(id, rec);
      }
    }
    return out;
  }

  async transformer(id: string): Promise<TransformerRecord | undefined> {
    const now = Date.now();
    const hit = this.transformers.get(id);
    if (hit !== undefined && now - hit.at < this.ttlMs) return hit.rec;
    const rec = await this.store.getTransformer(id);
    this.transformers.set(id, { rec, at: now });
    return rec;
  }
}
