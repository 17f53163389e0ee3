import type { BillingInterval } from '../domain/billing.js';
import { qid, qregexAny, rows, type Influx } from './influx.js';

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/**
 * The one way intervals are read back from InfluxDB (billing reads, the tariff advisor): the stream worker's
 * `interval` points starting in [fromMs, toMs), per meter; `durationMs` per meter is the registry's interval length.
 */
export async function readIntervals(
  influx: Influx,
  durationMs: ReadonlyMap<string, number>,
  fromMs: number,
  toMs: number,
): Promise<Map<string, BillingInterval[]>> {
  const out = new Map<string, BillingInterval[]>();
  const ids = [...durationMs.keys()];
  if (ids.length === 0) return out;
  const q =
    `SELECT "wh","export_wh","demand_w","register_wh","estimated" FROM ${qid('interval')} ` +
    `WHERE "meter" =~ ${qregexAny(ids)} AND time >= ${fromMs}ms AND time < ${toMs}ms GROUP BY "meter"`;
  for (const s of await influx.query(q)) {
    const meterId = s.tags.meter;
    const dur = meterId === undefined ? undefined : durationMs.get(meterId);
    if (meterId === undefined || dur === undefined) continue;
    const list = out.get(meterId) ?? [];
    for (const row of rows(s)) {
      const start = num(row.time);
      const wh = num(row.wh);
      const registerWh = num(row.register_wh);
      if (start === undefined || wh === undefined || registerWh === undefined) continue;
      list.push({
        start,
        durationMs: dur,
        wh,
        exportWh: num(row.export_wh) ?? 0,
        demandW: num(row.demand_w) ?? (wh * 3_600_000) / dur,
        registerWh,
        estimated: row.estimated === true,
      });
    }
    out.set(meterId, list);
  }
  return out;
}
