import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import { METER_EVENTS, METER_ID_PATTERN, MAX_REGISTER_WH, type MeterEvent, type PlainMeterEvent, type Reading } from '../contracts/reading.js';

/**
 * Stream entries as the ingest appends them: `r` = JSON array of Reading, `e` = JSON array of MeterEvent (a
 * `meterExchange` carries its registers), `rx` = ingest time (ms). Parsed once here; anything malformed is
 * reported, never trusted.
 */

const StoredReading = Type.Object({
  meterId: Type.String({ pattern: METER_ID_PATTERN }),
  ts: Type.Integer({ minimum: 0 }),
  seq: Type.Optional(Type.Integer({ minimum: 0 })),
  importWh: Type.Integer({ minimum: 0, maximum: MAX_REGISTER_WH }),
  exportWh: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_REGISTER_WH })),
  powerW: Type.Optional(Type.Number()),
  voltageV: Type.Optional(Type.Number({ minimum: 0 })),
  currentA: Type.Optional(Type.Number()),
});
const StoredRegister = Type.Integer({ minimum: 0, maximum: MAX_REGISTER_WH });
const StoredEvent = Type.Union([
  Type.Object({
    meterId: Type.String({ pattern: METER_ID_PATTERN }),
    ts: Type.Integer({ minimum: 0 }),
    event: Type.Union(METER_EVENTS.filter((e): e is PlainMeterEvent['event'] => e !== 'meterExchange').map((e) => Type.Literal(e))),
  }),
  Type.Object({
    meterId: Type.String({ pattern: METER_ID_PATTERN }),
    ts: Type.Integer({ minimum: 0 }),
    event: Type.Literal('meterExchange'),
    installWh: StoredRegister,
    removalWh: Type.Optional(StoredRegister),
    installExportWh: Type.Optional(StoredRegister),
  }),
]);
const checkReading = Compile(StoredReading);
const checkEvent = Compile(StoredEvent);

export interface StreamEntry {
  id: string;
  readings: Reading[];
  events: MeterEvent[];
  /** Ingest time, ms (the entry id's time when absent). */
  rx: number;
  /** Elements that did not parse, kept for the dead-letter stream. */
  malformed: string[];
}

function parseArray(raw: string | undefined, malformed: string[]): unknown[] {
  if (raw === undefined) return [];
  try {
    const v: unknown = JSON.parse(raw);
    if (Array.isArray(v)) return v;
  } catch {
    // fall through: the whole field is malformed
  }
  malformed.push(raw);
  return [];
}

/** One entry from its id and flat field list [k1, v1, k2, v2, …]. */
export function parseEntry(id: string, fields: readonly string[]): StreamEntry {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const k = fields[i];
    const v = fields[i + 1];
    if (k !== undefined && v !== undefined) map.set(k, v);
  }
  const malformed: string[] = [];
  const readings: Reading[] = [];
  for (const r of parseArray(map.get('r'), malformed)) {
    if (checkReading.Check(r)) readings.push(r);
    else malformed.push(JSON.stringify(r) ?? String(r));
  }
  const events: MeterEvent[] = [];
  for (const e of parseArray(map.get('e'), malformed)) {
    if (checkEvent.Check(e)) events.push(e);
    else malformed.push(JSON.stringify(e) ?? String(e));
  }
  const rxField = Number(map.get('rx'));
  const rx = Number.isFinite(rxField) ? rxField : Number(id.split('-')[0]);
  return { id, readings, events, rx, malformed };
}

const isString = (v: unknown): v is string => typeof v === 'string';

/** [id, fields | null] pairs of an XREADGROUP/XAUTOCLAIM reply; a deleted entry has null fields. */
export function parseEntryList(list: unknown): Array<{ id: string; fields: string[] | null }> {
  const out: Array<{ id: string; fields: string[] | null }> = [];
  if (!Array.isArray(list)) return out;
  for (const item of list) {
    if (!Array.isArray(item) || !isString(item[0])) continue;
    const f: unknown = item[1];
    out.push({ id: item[0], fields: Array.isArray(f) && f.every(isString) ? f : null });
  }
  return out;
}

/**
 * XREADGROUP reply → key → entries. RESP2 gives [[key, entries], …]; over RESP3 (ioredis 6) the map
 * arrives flattened as [key, entries, key, entries, …]. Both are accepted.
 */
export function parseReadReply(reply: unknown): Map<string, Array<{ id: string; fields: string[] | null }>> {
  const out = new Map<string, Array<{ id: string; fields: string[] | null }>>();
  if (!Array.isArray(reply)) return out;
  if (isString(reply[0])) {
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const key: unknown = reply[i];
      if (isString(key)) out.set(key, parseEntryList(reply[i + 1]));
    }
    return out;
  }
  for (const stream of reply) {
    if (!Array.isArray(stream) || !isString(stream[0])) continue;
    out.set(stream[0], parseEntryList(stream[1]));
  }
  return out;
}
