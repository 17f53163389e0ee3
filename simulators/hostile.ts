import { METER_ID_RE, type RejectReason } from '../src/contracts/reading.js';
import { MALFORMED_REASON, malformedMessage } from './malformed.js';
import { Rng } from './prng.js';
import type { MalformedVariant } from './scenario.js';

/**
 * Hostile MQTT traffic for the ingest's fuzz test, seeded: the same seed gives the same messages, byte for byte.
 * Every message says what the ingest must make of it: the reject reason of each dead letter it must write, and the
 * readings and events in it that are valid after all (a `-0` register, a `__proto__` key beside good fields, a meter
 * called `constructor`), which must be stored exactly once. The malformed variants of the fleet simulator
 * (malformed.ts) are one kind among these.
 *
 * Each hostile element has exactly one defect on an otherwise valid reading, so its reason does not depend on the
 * order in which the ingest checks fields.
 */

export const HOSTILE_KINDS = [
  'wrongType',
  'missingField',
  'hugeNumber',
  'outOfRange',
  'negativeZero',
  'nonFinite',
  'deepNesting',
  'hugeArray',
  'hugeString',
  'oversize',
  'invalidUtf8',
  'controlChars',
  'protoKeys',
  'injection',
  'pathTraversal',
  'badTopic',
  'topicMismatch',
  'mixedBatch',
  'notJson',
  'notObject',
  'events',
  'malformed',
] as const;
export type HostileKind = (typeof HOSTILE_KINDS)[number];

export interface ValidReading {
  meterId: string;
  ts: number;
  importWh: number;
}

export interface HostileMessage {
  kind: HostileKind;
  topic: string;
  payload: Buffer;
  /** One reason per dead letter the ingest must write for this message; empty when all of it is valid. */
  reasons: RejectReason[];
  /** Readings in it that are valid after all: stored exactly once, with these registers. */
  valid: ValidReading[];
  /** Meter events in it that are valid (appended once each). */
  validEvents: number;
}

interface Range {
  min: number;
  max: number;
}

export interface HostileOptions {
  seed: string | number;
  count: number;
  /** Readings are stamped in the hours before this (all inside the accepted history, none in the future). */
  nowMs: number;
  maxPayloadBytes: number;
  maxBatch: number;
  ranges: { powerW: Range; voltageV: Range; currentA: Range };
  /**
   * (meter, ts) pairs of good readings published after the hostile ones: out-of-range readings are stamped with
   * them, so a hostile reading that got through would turn the good one into a "duplicate" and break its chain.
   */
  shadow?: readonly ValidReading[];
  /** Relative weights per kind (default: the built-in mix). */
  weights?: Partial<Record<HostileKind, number>>;
}

/** Default mix: the bulk is cheap single-defect readings; big payloads are a few percent. */
const WEIGHTS: Record<HostileKind, number> = {
  wrongType: 10,
  missingField: 4,
  hugeNumber: 6,
  outOfRange: 10,
  negativeZero: 5,
  nonFinite: 6,
  deepNesting: 1.5,
  hugeArray: 0.6,
  hugeString: 2,
  oversize: 0.8,
  invalidUtf8: 4,
  controlChars: 5,
  protoKeys: 6,
  injection: 8,
  pathTraversal: 5,
  badTopic: 5,
  topicMismatch: 4,
  mixedBatch: 6,
  notJson: 4,
  notObject: 3,
  events: 3,
  malformed: 4,
};

/** A reading as field → JSON text, so values JSON.stringify cannot write (`1e999`, `-0`) can be written. */
type Fields = Array<[string, string]>;

const json = (v: unknown): string => JSON.stringify(v);
const obj = (f: Fields): string => `{${f.map(([k, v]) => `${json(k)}:${v}`).join(',')}}`;
const set = (f: Fields, key: string, text: string): Fields => {
  const out: Fields = f.filter(([k]) => k !== key);
  out.push([key, text]);
  return out;
};
const drop = (f: Fields, key: string): Fields => f.filter(([k]) => k !== key);

/** Ids that must never become a meter: line protocol and InfluxQL injection, path traversal, control characters. */
export const INJECTION_IDS = [
  'm1,foo=bar',
  'm1 value=1',
  'm1,meter=x import_wh=1i 0',
  'm1\nreading,meter=evil import_wh=1i',
  '"; DROP MEASUREMENT reading; --',
  "' OR '1'='1",
  "m1' OR 1=1; DROP DATABASE meterflow",
  'm1"',
  'm1\\',
  'm1=1',
  '/.*/',
  'x\r\n',
  'm1;SHOW MEASUREMENTS',
  '$(reboot)',
  'M-1#',
  'M-1+',
] as const;
export const TRAVERSAL_IDS = ['..', '.', '../../etc/passwd', '..\\..\\windows', '%2e%2e%2f', '....//', './M-1', 'M-1/../M-2', '-rf', ':M', '_x', '__proto__'];
/** Valid per the contract, and keys every plain object inherits: stored like any meter. */
export const PROTOTYPE_IDS = ['constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf'];
const CONTROL_IDS = ['M\u0000', 'M\n1', 'M\t1', 'M-1\u0007', 'M\u202e1', 'M\u00a0', 'M-\u0001', 'Ｍ-1', 'M\u200b1', 'M-😀'];
const WRONG_VALUES = ['"12"', 'true', 'false', 'null', '[]', '{}', '[1]', '{"$gt":0}', '""'];

class HostileGenerator {
  private readonly rng: Rng;
  /** Unique event time per valid reading or event (1 s apart), so none is a duplicate of another. */
  private validCount = 0;
  private shadowNext = 0;
  private readonly base: number;

  constructor(private readonly opts: HostileOptions) {
    this.rng = new Rng(opts.seed, 'hostile');
    this.base = opts.nowMs - 2 * 86_400_000;
  }

  /** A fresh valid reading: the base every hostile element corrupts one field of. */
  private reading(meterId?: string): { fields: Fields; r: ValidReading } {
    const n = this.validCount++;
    const id = meterId ?? `V-${String(n % 97).padStart(3, '0')}`;
    const ts = this.base + n * 1000;
    const importWh = this.rng.int(0, 2_000_000_000);
    const r = { meterId: id, ts, importWh };
    const fields: Fields = [
      ['meterId', json(id)],
      ['ts', json(this.rng.chance(0.5) ? new Date(ts).toISOString() : ts)],
      ['importWh', String(importWh)],
    ];
    if (this.rng.chance(0.7)) fields.push(['exportWh', String(this.rng.int(0, 1_000_000))]);
    if (this.rng.chance(0.7)) fields.push(['powerW', String(this.rng.int(-5000, 20000))]);
    if (this.rng.chance(0.7)) fields.push(['voltageV', String(Math.round(this.rng.range(207, 253) * 10) / 10)]);
    if (this.rng.chance(0.5)) fields.push(['currentA', String(Math.round(this.rng.range(0, 80) * 100) / 100)]);
    if (this.rng.chance(0.5)) fields.push(['seq', String(this.rng.int(0, 1_000_000))]);
    return { fields, r };
  }

  /** One element with one defect (or none: `reason` undefined means it is valid and `r` must be stored). */
  private element(kind: HostileKind): { text: string; reason?: RejectReason; r?: ValidReading } {
    const rng = this.rng;
    const { fields, r } = this.reading();
    switch (kind) {
      case 'wrongType': {
        const field = rng.pick(['meterId', 'ts', 'importWh', 'exportWh', 'powerW', 'voltageV', 'currentA', 'seq']);
        // A string is a wrong type everywhere but in ts, where it is a bad timestamp; meterId: a wrong type is any non-string.
        const values = field === 'ts' || field === 'meterId' ? WRONG_VALUES.filter((v) => !v.startsWith('"')) : WRONG_VALUES;
        return { text: obj(set(fields, field, rng.pick(values))), reason: 'bad_type' };
      }
      case 'missingField':
        return { text: obj(drop(fields, rng.pick(['meterId', 'ts', 'importWh']))), reason: 'missing_field' };
      case 'hugeNumber': {
        const c = rng.pick<[string, string, RejectReason]>([
          ['importWh', '1e308', 'register_too_large'],
          ['importWh', '9007199254740993', 'register_too_large'],
          ['exportWh', `1${'0'.repeat(rng.int(20, 400))}`, 'register_too_large'],
          ['powerW', '-1.7976931348623157e308', 'bad_value'],
          ['powerW', '1e300', 'bad_value'],
          ['voltageV', '1e308', 'bad_value'],
          ['currentA', '1e20', 'bad_value'],
          ['seq', '1e308', 'bad_value'],
          ['seq', '9007199254740993', 'bad_value'],
          ['ts', '1e308', 'bad_timestamp'],
          ['ts', '9e15', 'bad_timestamp'],
          ['ts', '-1e308', 'bad_timestamp'],
        ]);
        return { text: obj(set(fields, c[0], c[1])), reason: c[2] };
      }
      case 'outOfRange': {
        const field = rng.pick(['powerW', 'voltageV', 'currentA'] as const);
        const range = this.opts.ranges[field];
        const span = Math.max(1, range.max - range.min);
        const above = rng.chance(0.5);
        const v = above ? range.max + rng.pick([0.001, 1, span, span * 1e6]) : range.min - rng.pick([0.001, 1, span, span * 1e6]);
        return { text: obj(set(fields, field, String(v))), reason: 'bad_value' };
      }
      case 'negativeZero': {
        const field = rng.pick(['importWh', 'exportWh', 'powerW', 'voltageV', 'currentA', 'seq', 'ts']);
        const text = rng.pick(['-0', '-0.0', '-0e0', '-0E+5']);
        // `-0.0` is not an integer in JSON's eyes but is in a double's: the register is 0.
        if (field === 'ts') return { text: obj(set(fields, 'ts', text)), reason: 'bad_timestamp' };
        if (field === 'importWh') return { text: obj(set(fields, field, text)), r: { ...r, importWh: 0 } };
        return { text: obj(set(fields, field, text)), r };
      }
      case 'nonFinite': {
        const field = rng.pick(['importWh', 'exportWh', 'powerW', 'voltageV', 'currentA', 'seq', 'ts']);
        const neg = rng.chance(0.5);
        const text = `${neg ? '-' : ''}${rng.pick(['1e999', '1E400', '9e99999', `1${'0'.repeat(400)}`])}`;
        const reason: RejectReason =
          field === 'importWh' || field === 'exportWh'
            ? neg
              ? 'register_negative'
              : 'register_too_large'
            : field === 'seq'
              ? 'bad_type'
              : field === 'ts'
                ? 'bad_timestamp'
                : 'bad_value';
        return { text: obj(set(fields, field, text)), reason };
      }
      case 'hugeString': {
        const n = rng.int(65, 20_000);
        const c = rng.pick<[string, string, RejectReason | undefined]>([
          ['meterId', json('A'.repeat(n)), 'bad_meter_id'],
          ['ts', json(`2026-01-01T00:00:00${'0'.repeat(n)}Z`), 'bad_timestamp'],
          ['importWh', json('9'.repeat(n)), 'bad_type'],
          ['note', json('x'.repeat(n)), undefined],
        ]);
        return { text: obj(set(fields, c[0], c[1])), reason: c[2], r: c[2] === undefined ? r : undefined };
      }
      case 'controlChars': {
        const c = rng.pick<[string, string, RejectReason | undefined]>([
          ['meterId', json(rng.pick(CONTROL_IDS)), 'bad_meter_id'],
          ['ts', json(`2026-01-01T00:00:00Z${rng.pick(['\u0000', '\n', '\u2028'])}`), 'bad_timestamp'],
          ['note', json('\u0000\u0001\u001f\u007f\u2028\u2029\ufeff'), undefined],
        ]);
        return { text: obj(set(fields, c[0], c[1])), reason: c[2], r: c[2] === undefined ? r : undefined };
      }
      case 'protoKeys': {
        const c = rng.pick<[Fields, RejectReason | undefined]>([
          // Own keys named like the prototype's: plain data, never the prototype, never a reading's field.
          [set(fields, '__proto__', '{"voltageV":1e308,"importWh":-1,"polluted":true}'), undefined],
          [set(fields, 'constructor', '{"prototype":{"polluted":true}}'), undefined],
          [set(fields, 'hasOwnProperty', '1'), undefined],
          [[['__proto__', obj(fields)]], 'missing_field'],
          [set(fields, 'meterId', json('__proto__')), 'bad_meter_id'],
          [set(fields, 'meterId', json(rng.pick(['constructor', 'toString', 'valueOf']))), undefined],
        ]);
        if (c[1] === undefined) {
          const idText = c[0].find(([k]) => k === 'meterId')?.[1];
          const id = idText === undefined ? r.meterId : (JSON.parse(idText) as string);
          return { text: obj(c[0]), r: { ...r, meterId: id } };
        }
        return { text: obj(c[0]), reason: c[1] };
      }
      case 'injection':
        return { text: obj(set(fields, 'meterId', json(rng.pick(INJECTION_IDS)))), reason: 'bad_meter_id' };
      case 'pathTraversal':
        return { text: obj(set(fields, 'meterId', json(rng.pick(TRAVERSAL_IDS)))), reason: 'bad_meter_id' };
      default: {
        // Not an element kind: an element with a plain wrong type.
        return { text: obj(set(fields, 'importWh', '"n/a"')), reason: 'bad_type' };
      }
    }
  }

  private single(kind: HostileKind): HostileMessage {
    const e = this.element(kind);
    const topic = this.rng.chance(0.5) || e.r === undefined ? `concentrators/C-${this.rng.int(1, 9)}/readings` : `meters/${e.r.meterId}/readings`;
    return this.msg(kind, topic, e.text, e.reason ? [e.reason] : [], e.r ? [e.r] : []);
  }

  private msg(kind: HostileKind, topic: string, payload: string | Buffer, reasons: RejectReason[], valid: ValidReading[], validEvents = 0): HostileMessage {
    const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    // Size is checked before anything else: whatever is inside, an oversized message is one dead letter.
    if (bytes.length > this.opts.maxPayloadBytes) return { kind, topic, payload: bytes, reasons: ['payload_too_large'], valid: [], validEvents: 0 };
    return { kind, topic, payload: bytes, reasons, valid, validEvents };
  }

  next(): HostileMessage {
    const rng = this.rng;
    const weights = { ...WEIGHTS, ...this.opts.weights };
    const total = HOSTILE_KINDS.reduce((a, k) => a + weights[k], 0);
    let x = rng.range(0, total);
    let kind: HostileKind = 'wrongType';
    for (const k of HOSTILE_KINDS) {
      x -= weights[k];
      if (x < 0) {
        kind = k;
        break;
      }
    }
    const conc = `concentrators/C-${rng.int(1, 9)}/readings`;
    switch (kind) {
      case 'wrongType':
      case 'missingField':
      case 'hugeNumber':
      case 'negativeZero':
      case 'nonFinite':
      case 'hugeString':
      case 'controlChars':
      case 'protoKeys':
      case 'injection':
      case 'pathTraversal':
        return this.single(kind);
      case 'outOfRange': {
        const shadow = this.opts.shadow?.[this.shadowNext];
        if (shadow === undefined) return this.single(kind);
        // The very (meter, ts) of a good reading published later, with an impossible value and a register far off.
        this.shadowNext++;
        const field = rng.pick(['powerW', 'voltageV', 'currentA'] as const);
        const range = this.opts.ranges[field];
        const text = obj([
          ['meterId', json(shadow.meterId)],
          ['ts', String(shadow.ts)],
          ['importWh', String(shadow.importWh + 999_999)],
          [field, rng.pick([String(range.max * 10 + 1), String(range.min - 1), '1e308', '-1e308', '1e999'])],
        ]);
        return this.msg(kind, `meters/${shadow.meterId}/readings`, text, ['bad_value'], []);
      }
      case 'deepNesting': {
        const depth = rng.pick([1000, 10_000, 10_000, 50_000, 100_000]);
        const c = rng.pick(['array', 'object', 'inField', 'inExtra'] as const);
        if (c === 'array') return this.msg(kind, conc, '['.repeat(depth) + ']'.repeat(depth), ['not_object'], []);
        if (c === 'object') return this.msg(kind, conc, `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`, ['missing_field'], []);
        const { fields, r } = this.reading();
        const deep = rng.chance(0.5) ? '['.repeat(depth) + ']'.repeat(depth) : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
        if (c === 'inField') return this.msg(kind, conc, obj(set(fields, rng.pick(['importWh', 'powerW', 'meterId']), deep)), ['bad_type'], []);
        return this.msg(kind, conc, obj(set(fields, 'extra', deep)), [], [r]);
      }
      case 'hugeArray': {
        const c = rng.pick(['zeros', 'over', 'readings'] as const);
        const max = this.opts.maxBatch;
        if (c === 'zeros') {
          // Within the limits: every element is dead-lettered on its own.
          const n = Math.min(max, Math.floor((this.opts.maxPayloadBytes - 2) / 2), rng.int(200, 2000));
          return this.msg(kind, conc, `[${Array<string>(n).fill('0').join(',')}]`, Array<RejectReason>(n).fill('not_object'), []);
        }
        if (c === 'over')
          return this.msg(
            kind,
            conc,
            `[${Array<string>(max + 1)
              .fill('0')
              .join(',')}]`,
            ['batch_too_large'],
            [],
          );
        const items: string[] = [];
        const valid: ValidReading[] = [];
        let bytes = 2;
        while (items.length < max) {
          const { fields, r } = this.reading();
          const t = obj(fields);
          if (bytes + t.length + 1 > this.opts.maxPayloadBytes) break;
          bytes += t.length + 1;
          items.push(t);
          valid.push(r);
          if (items.length >= 1500) break;
        }
        return this.msg(kind, conc, `[${items.join(',')}]`, [], valid);
      }
      case 'oversize': {
        const { fields, r } = this.reading();
        const c = rng.pick(['exact', 'over', 'huge'] as const);
        const head = obj(set(fields, 'pad', '""'));
        const target = c === 'exact' ? this.opts.maxPayloadBytes : c === 'over' ? this.opts.maxPayloadBytes + 1 : this.opts.maxPayloadBytes * rng.int(2, 4);
        const text = obj(set(fields, 'pad', json('x'.repeat(target - head.length))));
        return this.msg(kind, conc, text, c === 'exact' ? [] : ['payload_too_large'], c === 'exact' ? [r] : []);
      }
      case 'invalidUtf8': {
        const { fields } = this.reading();
        const bad = Buffer.from(rng.pick([[0xff], [0xfe, 0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80]]));
        const text = obj(set(fields, 'meterId', '"M-X"'));
        const at = text.indexOf('M-X') + 1;
        // In a string or between tokens, strictly decoded: never valid JSON text.
        const where = rng.chance(0.5) ? at : text.length - 1;
        return this.msg(kind, conc, Buffer.concat([Buffer.from(text.slice(0, where)), bad, Buffer.from(text.slice(where))]), ['not_json'], []);
      }
      case 'badTopic': {
        const raw = rng.pick([...INJECTION_IDS, ...TRAVERSAL_IDS, 'M 1', '', 'A'.repeat(65), 'B'.repeat(20_000), 'M-😀']);
        // No control characters nor wildcards in a topic: the broker would drop the publisher instead of delivering.
        const id = [...raw].map((c) => (c.charCodeAt(0) < 0x20 || c === '\u007f' || '/+#'.includes(c) ? '_' : c)).join('');
        // Readable ids would be fine topics: make sure the id itself is bad.
        const bad = METER_ID_RE.test(id) ? `${id} ` : id;
        const leaf = rng.pick(['meters/%/readings', 'meters/%/events', 'concentrators/%/readings']);
        const { fields } = this.reading();
        return this.msg(kind, leaf.replace('%', bad), obj(fields), ['bad_topic'], []);
      }
      case 'topicMismatch': {
        const { fields, r } = this.reading();
        const c = rng.pick(['readings', 'events', 'readingOnEvents'] as const);
        const other = `${r.meterId}-other`;
        if (c === 'readings') return this.msg(kind, `meters/${other}/readings`, obj(fields), ['meter_mismatch'], []);
        if (c === 'events')
          return this.msg(
            kind,
            `meters/${other}/events`,
            obj([...fields.filter(([k]) => k === 'meterId' || k === 'ts'), ['event', '"lastGasp"']]),
            ['meter_mismatch'],
            [],
          );
        return this.msg(kind, `meters/${r.meterId}/events`, obj(fields), ['missing_field'], []);
      }
      case 'mixedBatch': {
        const n = rng.int(2, 60);
        const items: string[] = [];
        const reasons: RejectReason[] = [];
        const valid: ValidReading[] = [];
        const elementKinds: HostileKind[] = [
          'wrongType',
          'missingField',
          'hugeNumber',
          'outOfRange',
          'negativeZero',
          'nonFinite',
          'controlChars',
          'protoKeys',
          'injection',
          'pathTraversal',
        ];
        for (let i = 0; i < n; i++) {
          if (rng.chance(0.5)) {
            const { fields, r } = this.reading();
            items.push(obj(fields));
            valid.push(r);
            continue;
          }
          const c = rng.next();
          if (c < 0.1) {
            items.push(rng.pick(['null', '0', '"x"', '[]', 'true']));
            reasons.push('not_object');
            continue;
          }
          const e = this.element(rng.pick(elementKinds));
          items.push(e.text);
          if (e.reason) reasons.push(e.reason);
          if (e.r) valid.push(e.r);
        }
        return this.msg(kind, conc, `[${items.join(',')}]`, reasons, valid);
      }
      case 'notJson': {
        const { fields } = this.reading();
        const good = obj(fields);
        const text = rng.pick([
          good.slice(0, rng.int(0, good.length - 1)),
          `${good.slice(0, -1)},}`,
          `\ufeff${good}`,
          `${good}${good}`,
          'NaN',
          'Infinity',
          '-Infinity',
          'undefined',
          `{"meterId":"M-1","ts":"2026-01-01T00:00:00Z","importWh":NaN}`,
          good.replace('"meterId"', "'meterId'"),
          good.replace('"M', '"\u0001M').replace('"V', '"\u0001V'),
          `${good.slice(0, 1)}\n\u0000${good.slice(1)}`.replace('\u0000', '\u0000"x":'),
          '',
          '{"a":1',
          ']',
        ]);
        return this.msg(kind, conc, text, ['not_json'], []);
      }
      case 'notObject': {
        const c = rng.pick<[string, RejectReason[]]>([
          ['null', ['not_object']],
          ['42', ['not_object']],
          ['-0', ['not_object']],
          ['"a string"', ['not_object']],
          ['true', ['not_object']],
          ['[]', ['empty_batch']],
          ['[[]]', ['not_object']],
          ['{}', ['missing_field']],
          ['[null,1,"x"]', ['not_object', 'not_object', 'not_object']],
        ]);
        return this.msg(kind, conc, c[0], c[1], []);
      }
      case 'events': {
        const { r } = this.reading();
        const ts = json(new Date(r.ts).toISOString());
        const topic = `meters/${r.meterId}/events`;
        const c = rng.pick<[string, RejectReason[], number]>([
          [
            obj([
              ['meterId', json(r.meterId)],
              ['ts', ts],
              ['event', '"lastGasp"'],
            ]),
            [],
            1,
          ],
          [
            obj([
              ['meterId', json(r.meterId)],
              ['ts', ts],
              ['event', json(rng.pick(['__proto__', 'constructor', 'toString', 'explode', '']))],
            ]),
            ['bad_event'],
            0,
          ],
          [
            obj([
              ['meterId', json(r.meterId)],
              ['ts', ts],
              ['event', '["lastGasp"]'],
            ]),
            ['bad_event'],
            0,
          ],
          [
            obj([
              ['meterId', json(r.meterId)],
              ['ts', ts],
            ]),
            ['missing_field'],
            0,
          ],
          [
            obj([
              ['meterId', json(rng.pick(INJECTION_IDS))],
              ['ts', ts],
              ['event', '"tamper"'],
            ]),
            ['bad_meter_id'],
            0,
          ],
          [
            obj([
              ['meterId', json(r.meterId)],
              ['ts', '1e999'],
              ['event', '"tamper"'],
            ]),
            ['bad_timestamp'],
            0,
          ],
        ]);
        return this.msg(kind, topic, c[0], c[1], [], c[2]);
      }
      case 'malformed': {
        const variants = (Object.keys(MALFORMED_REASON) as MalformedVariant[]).filter(
          (v): v is Exclude<MalformedVariant, 'badElementInBatch'> => v !== 'badElementInBatch' && (v !== 'tooManyElements' || this.opts.maxBatch < 10_001),
        );
        const variant = rng.pick(variants);
        const { r } = this.reading();
        const m = malformedMessage(variant, r.meterId, `${r.meterId}x`, r.ts, this.opts.maxPayloadBytes + 1);
        return this.msg(kind, m.topic, m.payload, [MALFORMED_REASON[variant]], []);
      }
    }
  }
}

/** `count` hostile messages, deterministic for a seed. */
export function* hostileMessages(opts: HostileOptions): Generator<HostileMessage> {
  const g = new HostileGenerator(opts);
  for (let i = 0; i < opts.count; i++) yield g.next();
}
