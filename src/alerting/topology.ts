import type { CustomerRecord } from '../contracts/registry.js';
import { parseCustomerClass } from '../domain/alert-severity.js';
import type { MeterContext } from '../domain/alert-engine.js';
import type { TransformerTopology } from '../domain/alert-outage.js';

/** The registry subset the alert engine reads (RegistryStore fits). */
export interface RegistryView {
  getMeter(meterId: string): Promise<CustomerRecord & { registered: boolean }>;
  allMeters(): Promise<CustomerRecord[]>;
  getTransformer(transformerId: string): Promise<{ feederId: string } | undefined>;
}

/**
 * Registry look-ups for the alert engine, cached for `ttlMs`: an outage storm asks for the same transformer
 * hundreds of times within seconds. The transformer index is built from one registry scan, shared by concurrent
 * callers; a registry edit is seen after at most `ttlMs`.
 */
export class Topology {
  private meters = new Map<string, { at: number; ctx: MeterContext }>();
  private index: { at: number; byTransformer: Map<string, CustomerRecord[]> } | undefined;
  private loading: Promise<Map<string, CustomerRecord[]>> | undefined;
  private feeders = new Map<string, { at: number; feederId: string | null }>();

  constructor(
    private readonly registry: RegistryView,
    private readonly ttlMs = 60_000,
    private readonly clock: () => number = Date.now,
    private readonly maxMeters = 200_000,
  ) {}

  async meter(meterId: string): Promise<MeterContext> {
    const now = this.clock();
    const hit = this.meters.get(meterId);
    if (hit && now - hit.at < this.ttlMs) return hit.ctx;
    const m = await this.registry.getMeter(meterId);
    const ctx: MeterContext = {
      customerId: m.customerId,
      customerClass: parseCustomerClass(m.class),
      transformerId: m.registered ? m.transformerId : null,
      feederId: m.registered ? m.feederId : null,
      intervalMs: m.intervalMinutes * 60_000,
    };
    if (this.meters.size >= this.maxMeters) this.meters.clear();
    this.meters.set(meterId, { at: now, ctx });
    return ctx;
  }

  private async byTransformer(): Promise<Map<string, CustomerRecord[]>> {
    const now = this.clock();
    if (this.index && now - this.index.at < this.ttlMs) return this.index.byTransformer;
    this.loading ??= (async () => {
      try {
        const map = new Map<string, CustomerRecord[]>();
        for (const m of await this.registry.allMeters()) {
          const list = map.get(m.transformerId);
          if (list) list.push(m);
          else map.set(m.transformerId, [m]);
        }
        this.index = { at: this.clock(), byTransformer: map };
        return map;
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  /** Registered meters of a transformer; null when it has none (no outage correlation then). */
  async transformer(transformerId: string): Promise<TransformerTopology | null> {
    const meters = (await this.byTransformer()).get(transformerId) ?? [];
    if (meters.length === 0) return null;
    const now = this.clock();
    let feeder = this.feeders.get(transformerId);
    if (feeder === undefined || now - feeder.at >= this.ttlMs) {
      const t = await this.registry.getTransformer(transformerId);
      feeder = { at: now, feederId: t?.feederId ?? meters[0]?.feederId ?? null };
      this.feeders.set(transformerId, feeder);
    }
    return {
      transformerId,
      feederId: feeder.feederId,
      meters: meters.map((m) => ({ meterId: m.meterId, customerId: m.customerId, class: m.class })),
      intervalMs: Math.max(...meters.map((m) => m.intervalMinutes * 60_000)),
    };
  }
}
