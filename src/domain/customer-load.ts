import type { BillingInterval } from './billing.js';

/**
 * One series for the customer: intervals of all its meters (a replaced meter and its successor, or several meters
 * at one site) summed per interval of the coarsest length among them, so the advisor sees one load. Demand is the
 * summed average power (coincident demand); a bucket is estimated when any part of it is. Pure.
 */
export function customerIntervals(perMeter: Iterable<readonly BillingInterval[]>, durationMs: number): BillingInterval[] {
  const byStart = new Map<number, BillingInterval>();
  for (const list of perMeter) {
    for (const iv of list) {
      const start = Math.floor(iv.start / durationMs) * durationMs;
      const cur = byStart.get(start) ?? { start, durationMs, wh: 0, exportWh: 0, demandW: 0, registerWh: 0, estimated: false };
      cur.wh += iv.wh;
      cur.exportWh += iv.exportWh;
      cur.demandW += (iv.demandW * iv.durationMs) / durationMs;
      cur.registerWh = Math.max(cur.registerWh, iv.registerWh);
      cur.estimated ||= iv.estimated;
      byStart.set(start, cur);
    }
  }
  return [...byStart.values()].sort((a, b) => a.start - b.start);
}

/**
 * The meter whose record speaks for the customer (its tariff, its class): the one with the latest data (a replacement
 * after the meter it replaced), else the first given. `lastAt` is a meter's latest data time, -Infinity for none.
 */
export function activeMeter<M extends { meterId: string }>(meters: readonly M[], lastAt: (meterId: string) => number): M | undefined {
  let best: M | undefined;
  let bestAt = -Infinity;
  for (const m of meters) {
    const last = lastAt(m.meterId);
    if (best === undefined || last > bestAt) {
      best = m;
      bestAt = last;
    }
  }
  return best;
}
