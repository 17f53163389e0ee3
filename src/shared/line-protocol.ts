/**
 * InfluxDB line protocol built with template strings: the client's Point class costs ~5x more per point
 * (DESIGN.md cost model) and this is the ingest hot path.
 */
import type { Reading } from '../contracts/reading.js';

export type FieldValue = number | boolean | string | { int: number } | undefined;

export const escTag = (s: string): string => s.replace(/[,= \\]/g, (c) => `\\${c}`).replace(/\n/g, '\\n');
const escMeasurement = (s: string): string => s.replace(/[, \\]/g, (c) => `\\${c}`);
const escString = (s: string): string => s.replace(/["\\]/g, (c) => `\\${c}`).replace(/\n/g, '\\n');

/** Integer field (`i` suffix); plain numbers are floats. */
export const int = (n: number): { int: number } => ({ int: Math.trunc(n) });

function field(v: Exclude<FieldValue, undefined>): string | undefined {
  switch (typeof v) {
    case 'number':
      return Number.isFinite(v) ? String(v) : undefined;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'string':
      return `"${escString(v)}"`;
    default:
      return Number.isFinite(v.int) ? `${v.int}i` : undefined;
  }
}

/** One point, timestamp in ms (writers use precision=ms). Empty tags and undefined fields are left out. */
export function lp(measurement: string, tags: Record<string, string | undefined>, fields: Record<string, FieldValue>, tsMs: number): string {
  let out = escMeasurement(measurement);
  for (const k of Object.keys(tags).sort()) {
    const v = tags[k];
    if (v !== undefined && v !== '') out += `,${escTag(k)}=${escTag(v)}`;
  }
  let sep = ' ';
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const f = field(v);
    if (f === undefined) continue;
    out += `${sep}${escTag(k)}=${f}`;
    sep = ',';
  }
  if (sep === ' ') throw new Error(`point ${measurement} has no fields`);
  return `${out} ${Math.trunc(tsMs)}`;
}

/**
 * The raw `reading` point, hand-built: one per reading on the stream worker's hot path, where the generic `lp()`
 * costs ~10 µs. meterIds match METER_ID_PATTERN, which has nothing to escape in a tag; the feeder is escaped.
 */
export function readingLine(r: Reading, feeder: string): string {
  let fields = `import_wh=${r.importWh}i`;
  if (r.exportWh !== undefined) fields += `,export_wh=${r.exportWh}i`;
  if (r.powerW !== undefined && Number.isFinite(r.powerW)) fields += `,power_w=${r.powerW}`;
  if (r.voltageV !== undefined && Number.isFinite(r.voltageV)) fields += `,voltage_v=${r.voltageV}`;
  return `reading,feeder=${escTag(feeder)},meter=${r.meterId} ${fields} ${r.ts}`;
}
