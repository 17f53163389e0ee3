import type { MeterEvent, MeterExchangeEvent, Reading } from '../src/contracts/reading.js';
import type { CustomerClass, TransformerRecord } from '../src/contracts/registry.js';
import { shardOf } from '../src/domain/shard.js';
import { keys, type RedisClient } from '../src/shared/redis.js';

/**
 * A deterministic fleet for the stream-worker tests: flat residential meters (15-min reads on the
 * boundary) plus, when asked, one meter per known anomaly. Everything is delivered as the ingest would
 * append it: one stream entry per shard per quarter hour (a concentrator batch), in delivery order.
 */

export const FLEET_START = Date.UTC(2026, 10, 2); // Monday 2026-11-02 00:00 UTC
export const Q = 15 * 60_000;
const H = 3_600_000;
const D = 86_400_000;

/** A customer registry row (spelled out: FleetCustomer's Static type loses its literal unions). */
export interface FleetCustomer {
  meterId: string;
  customerId: string;
  class: CustomerClass;
  tariff: string;
  contractKw: number;
  feederId: string;
  transformerId: string;
  hasPv: boolean;
  intervalMinutes: 15 | 30 | 60;
}

export interface FleetItem {
  deliverAt: number;
  reading?: Reading;
  event?: MeterEvent;
}

export interface Fleet {
  customers: FleetCustomer[];
  transformers: TransformerRecord[];
  items: FleetItem[];
  /** Last quarter hour with reads. */
  end: number;
}

export const id = (i: number): string => `M-${String(i).padStart(4, '0')}`;
export const at = (day: number, hour: number, minute = 0): number => FLEET_START + day * D + hour * H + minute * 60_000;

function customer(i: number, over: Partial<FleetCustomer> = {}): FleetCustomer {
  return {
    meterId: id(i),
    customerId: `C-${i}`,
    class: 'residential',
    tariff: 'default',
    contractKw: 10,
    feederId: i % 2 === 0 ? 'F-A' : 'F-B',
    transformerId: i % 2 === 0 ? 'T-A' : 'T-B',
    hasPv: false,
    intervalMinutes: 15,
    ...over,
  };
}

export interface FleetOptions {
  meters: number;
  /** Quarter hours of data from FLEET_START. */
  quarters: number;
  anomalies: boolean;
  /** Add the replaced meters of EXCHANGED (their work orders arriving before, just after and a day after the reset read). */
  exchanges?: boolean;
}

/**
 * Meters replaced at day 1 08:00–08:15 (150 Wh every quarter hour all along, so the ledger has each at exactly
 * 150 Wh × quarters). `exchangeAt`: the install time; `deliverAt`: when the work order reaches the stream.
 */
export const EXCHANGED = [
  { meterId: 'M-X1', exchangeMin: 0, installWh: 20, withRemoval: true, deliverAt: at(1, 8) }, // before the new meter's first read
  { meterId: 'M-X2', exchangeMin: 0, installWh: 30, withRemoval: false, deliverAt: at(1, 8, 45) }, // after it, still in the window
  { meterId: 'M-X3', exchangeMin: 5, installWh: 25, withRemoval: true, deliverAt: at(2, 12) }, // a day later, after its day closed
] as const;
export const EXCHANGED_WH_PER_Q = 150;

function exchangedMeter(x: (typeof EXCHANGED)[number], end: number, items: FleetItem[]): void {
  const perMin = EXCHANGED_WH_PER_Q / 15;
  const installTs = at(1, 8, x.exchangeMin);
  let imp = 2_000_000;
  for (let t = FLEET_START; t <= end; t += Q) {
    items.push({ deliverAt: t, reading: { meterId: x.meterId, ts: t, importWh: imp, exportWh: 0 } });
    if (t === at(1, 8)) {
      const removalWh = imp + ((installTs - t) / 60_000) * perMin;
      imp = x.installWh + ((t + Q - installTs) / 60_000) * perMin;
      const ex: MeterExchangeEvent = { meterId: x.meterId, ts: installTs, event: 'meterExchange', installWh: x.installWh, installExportWh: 0 };
      if (x.withRemoval) ex.removalWh = removalWh;
      items.push({ deliverAt: x.deliverAt, event: ex });
    } else imp += EXCHANGED_WH_PER_Q;
  }
}

/**
 * With anomalies (meters 0–13 and one unregistered meter):
 * 0 spike · 1 reverseFlow · 2 silent + lastGasp · 3 registerReset · 4 voltage · 5 customerPeak (and spike) ·
 * 6 drop · 7 flatline · 8 out-of-order + duplicate · 9 a late read, then a backlog flushed after its day closed ·
 * 10–13 on the small transformer T-HOT,
 * which they overload (and the fleet peaks) at day 4 18:00.
 */
export function buildFleet(o: FleetOptions): Fleet {
  const customers: FleetCustomer[] = [];
  const transformers: TransformerRecord[] = [
    { transformerId: 'T-A', feederId: 'F-A', ratingKva: 500 },
    { transformerId: 'T-B', feederId: 'F-B', ratingKva: 500 },
  ];
  const items: FleetItem[] = [];
  const end = FLEET_START + o.quarters * Q;
  for (let i = 0; i < o.meters; i++) {
    const a = o.anomalies;
    const hot = a && i >= 10 && i <= 13;
    customers.push(
      customer(i, {
        ...(hot ? { transformerId: 'T-HOT', feederId: 'F-H' } : {}),
        ...(a && i === 5 ? { contractKw: 5 } : {}),
      }),
    );
    let imp = 1_000_000 + i * 1000;
    let exp = 0;
    for (let t = FLEET_START; t <= end; t += Q) {
      const reading: Reading = { meterId: id(i), ts: t, importWh: imp, exportWh: exp, voltageV: 231 };
      let deliverAt = t;
      if (a && i === 2 && t > at(4, 6)) break;
      if (a && i === 4 && t >= at(2, 9) && t <= at(2, 9, 30)) reading.voltageV = 258;
      if (a && i === 8 && t === at(1, 10)) deliverAt = at(1, 10, 15) + 1; // arrives just after its successor
      if (a && i === 9 && t >= at(1, 23) && t <= at(2, 1, 30)) deliverAt = at(2, 1, 30); // concentrator offline, then flushes
      items.push({ deliverAt, reading });
      if (a && i === 8 && t === at(1, 10, 30)) items.push({ deliverAt: t, reading: { ...reading } });
      // energy of the interval starting at t
      let wh = hot ? 500 : 100 + (i % 5);
      if (a && i === 0 && t === at(4, 12)) wh = 2000;
      if (a && i === 5 && t === at(3, 14)) wh = 1500;
      if (a && i === 6 && t >= at(2, 0)) wh = 20;
      if (a && i === 7 && t >= at(3, 20) && t < at(4, 6)) wh = 0;
      if (hot && t === at(4, 18)) wh = 1250;
      if (a && i === 1 && (t === at(3, 10) || t === at(3, 10, 15))) exp += 50;
      imp += wh;
      if (a && i === 3 && t + Q === at(3, 8)) imp = 0; // the meter is replaced: its register restarts
    }
  }
  if (o.anomalies) {
    transformers.push({ transformerId: 'T-HOT', feederId: 'F-H', ratingKva: 20 });
    items.push({ deliverAt: at(4, 6, 5), event: { meterId: id(2), ts: at(4, 6, 5), event: 'lastGasp' } });
    items.push({ deliverAt: at(1, 5), reading: { meterId: id(9), ts: at(1, 1, 7), importWh: 1_009_000 + 4 * 96 * 104 } });
    let imp = 0;
    for (let t = FLEET_START; t <= end; t += Q) {
      items.push({ deliverAt: t, reading: { meterId: 'M-UNREG', ts: t, importWh: imp } });
      imp += 100;
    }
  }
  if (o.exchanges === true) {
    EXCHANGED.forEach((x, k) => {
      customers.push(customer(20 + k, { meterId: x.meterId, customerId: `C-${x.meterId}` }));
      exchangedMeter(x, end, items);
    });
  }
  // Stable sort by delivery time: the stream order a real ingest would produce.
  items.sort((x, y) => x.deliverAt - y.deliverAt);
  return { customers, transformers, items, end };
}

/** Stream entries per shard per quarter hour of delivery, in delivery order. */
export function fleetEntries(f: Fleet, shards: number): Array<{ shard: number; fields: string[] }> {
  const out: Array<{ shard: number; fields: string[] }> = [];
  let bucket = Number.NaN;
  let open = new Map<number, { r: Reading[]; e: MeterEvent[]; rx: number }>();
  const flush = (): void => {
    for (const [shard, g] of [...open].sort((x, y) => x[0] - y[0])) {
      const fields: string[] = [];
      if (g.r.length > 0) fields.push('r', JSON.stringify(g.r));
      if (g.e.length > 0) fields.push('e', JSON.stringify(g.e));
      fields.push('rx', String(g.rx));
      out.push({ shard, fields });
    }
    open = new Map();
  };
  for (const it of f.items) {
    const b = Math.floor(it.deliverAt / Q);
    if (b !== bucket) {
      flush();
      bucket = b;
    }
    const meterId = it.reading?.meterId ?? it.event?.meterId ?? '';
    const shard = shardOf(meterId, shards);
    const g = open.get(shard) ?? { r: [], e: [], rx: it.deliverAt + 1000 };
    if (it.reading) g.r.push(it.reading);
    if (it.event) g.e.push(it.event);
    g.rx = Math.max(g.rx, it.deliverAt + 1000);
    open.set(shard, g);
  }
  flush();
  return out;
}

/** Appends the entries in order per shard: a pipeline per shard, whose keys are one slot on a cluster. */
export async function feedEntries(redis: RedisClient, entries: Array<{ shard: number; fields: string[] }>): Promise<void> {
  for (let i = 0; i < entries.length; i += 500) {
    const pipes = new Map<number, ReturnType<RedisClient['pipeline']>>();
    for (const e of entries.slice(i, i + 500)) {
      let p = pipes.get(e.shard);
      if (p === undefined) {
        p = redis.pipeline();
        pipes.set(e.shard, p);
      }
      p.xadd(keys.readings(e.shard), '*', ...e.fields);
    }
    await Promise.all([...pipes.values()].map((p) => p.exec()));
  }
}

export async function loadRegistry(redis: RedisClient, f: Fleet): Promise<void> {
  await redis.hset(keys.registryMeters, Object.fromEntries(f.customers.map((c) => [c.meterId, JSON.stringify(c)])));
  await redis.hset(keys.registryTransformers, Object.fromEntries(f.transformers.map((t) => [t.transformerId, JSON.stringify(t)])));
}
