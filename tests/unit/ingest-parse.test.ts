import { elementText } from '../../src/ingest/dead-letters.js';
import { describe, expect, it } from 'vitest';
import { REJECT_REASONS, type RejectReason } from '../../src/contracts/reading.js';
import { parseMessage, parseTimestamp, parseTopic, type ParseLimits } from '../../src/ingest/parse.js';

const NOW = Date.parse('2026-11-26T03:00:00Z');
const LIMITS: ParseLimits = { maxPayloadBytes: 1024, maxBatch: 3, maxFutureMs: 300_000, maxAgeMs: 3650 * 86_400_000 };
const good = { meterId: 'M-1', ts: '2026-11-26T02:45:00Z', importWh: 1000, exportWh: 0, powerW: 500, voltageV: 230.1, currentA: 2.1, seq: 7 };
const meterTopic = { kind: 'meterReadings', meterId: 'M-1' } as const;
const conc = { kind: 'concentratorReadings', concentratorId: 'T-1' } as const;
const buf = (v: unknown): Buffer => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

describe('parseTopic', () => {
  it.each([
    ['meters/M-1/readings', { kind: 'meterReadings', meterId: 'M-1' }],
    ['meters/M-1/events', { kind: 'meterEvents', meterId: 'M-1' }],
    ['concentrators/T-9/readings', { kind: 'concentratorReadings', concentratorId: 'T-9' }],
    ['meters/M 1/readings', undefined],
    ['meters/M-1/other', undefined],
    ['meters/M-1/readings/x', undefined],
  ])('%s', (topic, expected) => expect(parseTopic(topic)).toEqual(expected));
});

describe('parseTimestamp', () => {
  it.each([
    ['2026-11-26T02:15:00Z', Date.parse('2026-11-26T02:15:00Z')],
    ['2026-11-26T03:15:00+01:00', Date.parse('2026-11-26T02:15:00Z')],
    ['2026-11-26T02:15:00.250Z', Date.parse('2026-11-26T02:15:00.250Z')],
    [1_795_000_000_000, 1_795_000_000_000],
    ['2026-11-26 02:15:00', undefined], // no offset: ambiguous local time
    ['yesterday', undefined],
    [1_795_000_000, undefined], // seconds, not ms
    [1.5e12 + 0.5, undefined],
  ])('%s', (ts, expected) => expect(parseTimestamp(ts)).toBe(expected));
});

describe('parseMessage accepts good readings', () => {
  it('normalises a single reading', () => {
    const p = parseMessage(meterTopic, buf(good), NOW, LIMITS);
    expect(p.rejections).toEqual([]);
    expect(p.readings).toEqual([{ ...good, ts: Date.parse(good.ts) }]);
  });
  it('accepts epoch ms and only the required fields', () => {
    const p = parseMessage(meterTopic, buf({ meterId: 'M-1', ts: NOW - 900_000, importWh: 0 }), NOW, LIMITS);
    expect(p.readings).toEqual([{ meterId: 'M-1', ts: NOW - 900_000, importWh: 0 }]);
  });
  it('takes any meter ids on a concentrator topic', () => {
    const p = parseMessage(conc, buf([good, { ...good, meterId: 'M-2' }]), NOW, LIMITS);
    expect(p.readings.map((r) => r.meterId)).toEqual(['M-1', 'M-2']);
  });
  it('accepts a register of exactly 2^53-1', () => {
    const p = parseMessage(meterTopic, buf(`{"meterId":"M-1","ts":"2026-11-26T02:45:00Z","importWh":9007199254740991}`), NOW, LIMITS);
    expect(p.readings[0]?.importWh).toBe(Number.MAX_SAFE_INTEGER);
  });
});

const cases: Array<[RejectReason, Parameters<typeof parseMessage>[0], Buffer | string, boolean]> = [
  ['payload_too_large', meterTopic, 'x'.repeat(1025), true],
  ['not_json', meterTopic, '{"meterId":', true],
  ['not_object', meterTopic, '42', true],
  ['not_object', meterTopic, 'null', true],
  ['empty_batch', meterTopic, '[]', true],
  ['batch_too_large', conc, JSON.stringify([good, good, good, good]), true],
  ['missing_field', meterTopic, JSON.stringify({ meterId: 'M-1', ts: good.ts }), false],
  ['missing_field', meterTopic, JSON.stringify({ meterId: 'M-1', importWh: 1 }), false],
  ['bad_type', meterTopic, JSON.stringify({ ...good, importWh: '1000' }), false],
  ['bad_type', meterTopic, JSON.stringify({ ...good, powerW: 'high' }), false],
  ['bad_type', meterTopic, JSON.stringify({ ...good, ts: true }), false],
  ['bad_type', meterTopic, JSON.stringify({ ...good, seq: -1 }), false],
  ['bad_value', meterTopic, JSON.stringify({ ...good, voltageV: -3 }), false],
  ['bad_meter_id', conc, JSON.stringify({ ...good, meterId: 'M 1/../x' }), false],
  ['bad_meter_id', conc, JSON.stringify({ ...good, meterId: 'M'.repeat(65) }), false],
  ['meter_mismatch', meterTopic, JSON.stringify({ ...good, meterId: 'M-2' }), false],
  ['register_negative', meterTopic, JSON.stringify({ ...good, importWh: -5 }), false],
  ['register_negative', meterTopic, JSON.stringify({ ...good, exportWh: -1 }), false],
  ['register_not_integer', meterTopic, JSON.stringify({ ...good, importWh: 10.5 }), false],
  ['register_too_large', meterTopic, `{"meterId":"M-1","ts":"2026-11-26T02:45:00Z","importWh":9007199254740993}`, false],
  ['bad_timestamp', meterTopic, JSON.stringify({ ...good, ts: '26/11/2026 02:45' }), false],
  ['bad_timestamp', meterTopic, JSON.stringify({ ...good, ts: '2026-13-45T99:00:00Z' }), false],
  ['future_timestamp', meterTopic, JSON.stringify({ ...good, ts: NOW + 301_000 }), false],
  ['too_old', meterTopic, JSON.stringify({ ...good, ts: '2001-01-01T00:00:00Z' }), false],
];

describe('parseMessage rejects with a specific reason', () => {
  it.each(cases)('%s: %s', (reason, topic, payload, whole) => {
    const limits = reason === 'too_old' ? { ...LIMITS, maxAgeMs: 365 * 86_400_000 } : LIMITS;
    const p = parseMessage(topic, buf(payload), NOW, limits);
    expect(p.readings).toEqual([]);
    expect(p.rejections.map((r) => r.reason)).toEqual([reason]);
    expect(p.wholeRejected).toBe(whole);
    expect(p.rejections[0]?.detail.length).toBeGreaterThan(5);
  });

  it('covers every reason code that readings can produce', () => {
    const covered = new Set(cases.map((c) => c[0]));
    // bad_event: events only; bad_topic: the topic, before parsing; handoff_failed: after parsing (tests/integration/ingest-acks.test.ts).
    const eventOnly: RejectReason[] = ['bad_event', 'bad_topic', 'handoff_failed'];
    expect(REJECT_REASONS.filter((r) => !covered.has(r) && !eventOnly.includes(r))).toEqual([]);
  });

  it('describes an element too deep to serialise instead of failing on it (dead letters are total)', () => {
    const deep = '['.repeat(20_000) + ']'.repeat(20_000);
    const p = parseMessage({ kind: 'meterReadings', meterId: 'M-1' }, Buffer.from(deep), NOW, { ...LIMITS, maxPayloadBytes: 262_144 });
    expect(p.rejections.map((r) => r.reason)).toEqual(['not_object']);
    expect(elementText(p.rejections[0]?.item, 4096)).toBe('[element not serialisable: Maximum call stack size exceeded]');
    expect(elementText({ a: 1 }, 4096)).toBe('{"a":1}');
  });

  it('keeps good neighbours of a bad element and reports its index', () => {
    const p = parseMessage(conc, buf([good, { ...good, importWh: -1 }, { ...good, meterId: 'M-3' }]), NOW, LIMITS);
    expect(p.readings.map((r) => r.meterId)).toEqual(['M-1', 'M-3']);
    expect(p.rejections).toEqual([expect.objectContaining({ reason: 'register_negative', index: 1, meterId: 'M-1' })]);
  });
});

describe('parseMessage on the events topic', () => {
  const evTopic = { kind: 'meterEvents', meterId: 'M-1' } as const;
  it('accepts a last gasp', () => {
    const p = parseMessage(evTopic, buf({ meterId: 'M-1', ts: '2026-11-26T02:17:41Z', event: 'lastGasp' }), NOW, LIMITS);
    expect(p.events).toEqual([{ meterId: 'M-1', ts: Date.parse('2026-11-26T02:17:41Z'), event: 'lastGasp' }]);
  });
  it('rejects an unknown event name', () => {
    const p = parseMessage(evTopic, buf({ meterId: 'M-1', ts: '2026-11-26T02:17:41Z', event: 'explode' }), NOW, LIMITS);
    expect(p.rejections.map((r) => r.reason)).toEqual(['bad_event']);
  });
  it('accepts a meter exchange with its install, removal and export reads', () => {
    const ts = '2026-11-26T02:15:00Z';
    const p = parseMessage(
      evTopic,
      buf([
        { meterId: 'M-1', ts, event: 'meterExchange', installWh: 21, removalWh: 1_234_567, installExportWh: 0 },
        { meterId: 'M-1', ts, event: 'meterExchange', installWh: 0 },
      ]),
      NOW,
      LIMITS,
    );
    expect(p.rejections).toEqual([]);
    expect(p.events).toEqual([
      { meterId: 'M-1', ts: Date.parse(ts), event: 'meterExchange', installWh: 21, removalWh: 1_234_567, installExportWh: 0 },
      { meterId: 'M-1', ts: Date.parse(ts), event: 'meterExchange', installWh: 0 },
    ]);
  });
  it.each([
    { name: 'no install read', extra: {}, reason: 'missing_field', detail: 'installWh: required for meterExchange' },
    { name: 'a negative install read', extra: { installWh: -3 }, reason: 'register_negative', detail: 'installWh: -3 is negative' },
    {
      name: 'a fractional removal read',
      extra: { installWh: 20, removalWh: 10.5 },
      reason: 'register_not_integer',
      detail: 'removalWh: 10.5 is not an integer Wh',
    },
    { name: 'a text install read', extra: { installWh: '20' }, reason: 'bad_type', detail: 'installWh: expected an integer number of Wh, got string' },
    {
      name: 'an export read beyond 2^53',
      extra: { installWh: 20, installExportWh: 2 ** 60 },
      reason: 'register_too_large',
      detail: `installExportWh: ${2 ** 60} is above 2^53-1`,
    },
  ])('dead-letters a meter exchange with $name', ({ extra, reason, detail }) => {
    const p = parseMessage(evTopic, buf({ meterId: 'M-1', ts: '2026-11-26T02:15:00Z', event: 'meterExchange', ...extra }), NOW, LIMITS);
    expect(p.events).toEqual([]);
    expect(p.rejections).toEqual([expect.objectContaining({ reason, detail, meterId: 'M-1' })]);
  });
});

describe('readingLine', () => {
  it('matches the generic line-protocol builder', async () => {
    const { readingLine } = await import('../../src/shared/line-protocol.js');
    const { int, lp } = await import('../../src/shared/line-protocol.js');
    const r = { meterId: 'M-1', ts: NOW, importWh: 12345, exportWh: 7, powerW: 512.5, voltageV: 230.1 };
    const generic = lp(
      'reading',
      { meter: r.meterId, feeder: 'F 1,a' },
      { import_wh: int(r.importWh), export_wh: int(r.exportWh), power_w: r.powerW, voltage_v: r.voltageV },
      r.ts,
    );
    expect(readingLine(r, 'F 1,a')).toBe(generic);
    expect(readingLine({ meterId: 'M-2', ts: NOW, importWh: 0 }, 'F1')).toBe(`reading,feeder=F1,meter=M-2 import_wh=0i ${NOW}`);
  });
});
