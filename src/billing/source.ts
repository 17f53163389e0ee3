import { parseStoredRead, type StoredRead } from '../shared/billing-store.js';
import type { BillingInterval } from '../domain/billing.js';
import { readIntervals } from '../shared/interval-store.js';
import { readProfiles, type StoredProfile } from '../shared/profile-store.js';
import { qid, qregexAny, rows, tagValues, type Influx, type InfluxSeries } from '../shared/influx.js';

/** What the billing role reads from InfluxDB: the stream worker's intervals, raw reads, stored billing reads. */
export interface BillingSource {
  /** Every meter that has interval points (all time). */
  metersWithIntervals(): Promise<string[]>;
  /** Every meter with points in a billing measurement (all time). */
  metersWithStored(measurement: string): Promise<string[]>;
  /** Time of the earliest interval point, if any. */
  earliestInterval(): Promise<number | undefined>;
  /** Interval points starting in [fromMs, toMs) per meter; `durationMs` per meter (registry interval length). */
  intervals(durationMs: ReadonlyMap<string, number>, fromMs: number, toMs: number): Promise<Map<string, BillingInterval[]>>;
  /** Meters among `meterIds` with an actual `reading` point exactly at `atMs`. */
  readsAt(meterIds: readonly string[], atMs: number): Promise<Set<string>>;
  /** Stored billing reads of `meterIds` with a start in [fromMs, toMs). */
  stored(measurement: string, meterIds: readonly string[], fromMs: number, toMs: number): Promise<StoredRead[]>;
  /** Stored customer profiles of `months` (YYYY-MM), one per customer and month. */
  profiles(months: readonly string[]): Promise<StoredProfile[]>;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Rows of a `GROUP BY meter` query, each with its series tags. */
export function parseStoredSeries(series: InfluxSeries[]): StoredRead[] {
  const out: StoredRead[] = [];
  for (const s of series) {
    for (const row of rows(s)) {
      const r = parseStoredRead(row, s.tags);
      if (r !== undefined) out.push(r);
    }
  }
  return out;
}

export function influxBillingSource(influx: Influx): BillingSource {
  return {
    async metersWithIntervals() {
      return tagValues(await influx.query(`SHOW TAG VALUES FROM ${qid('interval')} WITH KEY = ${qid('meter')}`));
    },
    async metersWithStored(measurement) {
      return tagValues(await influx.query(`SHOW TAG VALUES FROM ${qid(measurement)} WITH KEY = ${qid('meter')}`));
    },
    async earliestInterval() {
      const series = await influx.query(`SELECT first(${qid('wh')}) FROM ${qid('interval')}`);
      const t = series[0]?.values[0]?.[0];
      return num(t);
    },
    intervals(durationMs, fromMs, toMs) {
      return readIntervals(influx, durationMs, fromMs, toMs);
    },
    async readsAt(meterIds, atMs) {
      const out = new Set<string>();
      if (meterIds.length === 0) return out;
      const q =
        `SELECT "import_wh" FROM ${qid('reading')} WHERE "meter" =~ ${qregexAny([...meterIds])} ` +
        `AND time >= ${atMs}ms AND time <= ${atMs}ms GROUP BY "meter"`;
      for (const s of await influx.query(q)) if (s.tags.meter !== undefined && s.values.length > 0) out.add(s.tags.meter);
      return out;
    },
    async stored(measurement, meterIds, fromMs, toMs) {
      if (meterIds.length === 0) return [];
      const q =
        `SELECT * FROM ${qid(measurement)} WHERE "meter" =~ ${qregexAny([...meterIds])} ` + `AND time >= ${fromMs}ms AND time < ${toMs}ms GROUP BY "meter"`;
      return parseStoredSeries(await influx.query(q));
    },
    profiles(months) {
      return readProfiles(influx, months);
    },
  };
}
