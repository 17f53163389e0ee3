import { elementText } from '../../src/ingest/dead-letters.js';
import { describe, expect, it } from 'vitest';
import { REJECT_REASONS, type RejectReason } from '../../src/contracts/reading.js';
import { IngestConfig } from '../../src/contracts/config-ingest.js';
import { parseLimits, parseMessage, parseTimestamp, parseTopic, type ParseLimits } from '../../src/ingest/parse.js';
import { loadSection } from '../../src/shared/config.js';

const NOW = Date.parse('2026-11-26T03:00:00Z');
const RANGES: ParseLimits['ranges'] = {
  powerW: { min: -50_000_000, max: 50_000_000 },
  voltageV: { min: 0, max: 1000 },
  currentA: { min: -20_000, max: 20_000 },
};
const LIMITS: ParseLimits = { maxPayloadBytes: 1024, maxBatch: 3, maxFutureMs: 300_000, maxAgeMs: 3650 * 86_400_000, ranges: RANGES };
const good = { meterId: 'M-1', ts: '2026-11-26T02:45:00Z', importWh: 1000, exportWh: 0, powerW: 500, voltageV: 230.1, currentA: 2.1, seq: 7 };
const meterTopic = { kind: 'meterReadings', meterId: 'M-1' } as const;
const conc = { kind: 'concentratorReadings', concentratorId: 'T-1' } as const;
const buf = (v: unknown): Buffer => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

describe('parseTopic', () => {
  it.each([
    ['meters/M-1/readings', { kind: 'meterReadings', meterId: 'M-1' }],
    ['meters/M-1/events', { kind: 'meterEvents', meterId: 'M-1' }],
    ['headend/meters/M-1/exchange', { kind: 'exchangeOrders', meterId: 'M-1' }],
    ['headend/meters/M 1/exchange', undefined],
    ['headend/meters/M-1/events', undefined],
    ['headend/M-1/exchange', undefined],
    ['concentrators/T-9/readings', { kind: 'concentratorReadings', concentratorId: 'T-9' }],
    ['meters/M 1/readings', undefined],
    ['meters/M-1/other', undefined],
    ['meters/M-1/readings/x', undefined],
    ['meters/../readings', undefined],
    ['meters/./readings', undefined],
    ['meters/-rf/readings', undefined],
    ['meters/m1,foo=bar/readings', undefined],
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
  ['bad_meter_id', conc, JSON.stringify({ ...good, meterId: '..' }), false],
  ['bad_meter_id', conc, JSON.stringify({ ...good, meterId: 'm1 value=1' }), false],
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
    const eventOnly: RejectReason[] = ['bad_event', 'exchange_not_from_headend', 'bad_topic', 'handoff_failed'];
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

describe('plausible ranges (config/ingest.yaml `ranges`)', () => {
  // field, value as JSON text, accepted value or the rejection detail
  const table: Array<[string, string, number | string]> = [
    ['voltageV', '1e308', 'voltageV: 1e+308 is outside the plausible range [0, 1000]'],
    ['voltageV', '1000.1', 'voltageV: 1000.1 is outside the plausible range [0, 1000]'],
    ['voltageV', '-3', 'voltageV: -3 is outside the plausible range [0, 1000]'],
    ['voltageV', '-1e-300', 'voltageV: -1e-300 is outside the plausible range [0, 1000]'],
    ['voltageV', '1e999', 'voltageV: Infinity is not a finite number'],
    ['voltageV', '-1e999', 'voltageV: -Infinity is not a finite number'],
    ['voltageV', '1000', 1000],
    ['voltageV', '0', 0],
    ['voltageV', '-0', 0],
    ['voltageV', '5e-324', 5e-324],
    ['powerW', '50000000', 50_000_000],
    ['powerW', '-50000000', -50_000_000],
    ['powerW', '50000000.5', 'powerW: 50000000.5 is outside the plausible range [-50000000, 50000000]'],
    ['powerW', '-1.7976931348623157e308', 'powerW: -1.7976931348623157e+308 is outside the plausible range [-50000000, 50000000]'],
    ['powerW', '-0', 0],
    ['currentA', '20000', 20_000],
    ['currentA', '-20000', -20_000],
    ['currentA', '20001', 'currentA: 20001 is outside the plausible range [-20000, 20000]'],
    ['currentA', '1E400', 'currentA: Infinity is not a finite number'],
  ];
  it.each(table)('%s: %s', (field, text, expected) => {
    const payload = `{"meterId":"M-1","ts":"2026-11-26T02:45:00Z","importWh":1000,"${field}":${text}}`;
    const p = parseMessage(meterTopic, buf(payload), NOW, LIMITS);
    if (typeof expected === 'number') {
      expect(p.rejections).toEqual([]);
      const got = p.readings[0]?.[field as 'voltageV' | 'powerW' | 'currentA'];
      // Object.is: -0 is stored as +0
      expect(Object.is(got, expected), `${got}`).toBe(true);
    } else {
      expect(p.readings).toEqual([]);
      expect(p.rejections).toEqual([{ reason: 'bad_value', detail: expected, meterId: 'M-1', item: expect.anything() }]);
    }
  });

  it('takes its ranges from config/ingest.yaml and refuses a range with min above max', () => {
    const cfg = loadSection('ingest', IngestConfig);
    expect(parseLimits(cfg).ranges).toEqual(RANGES);
    expect(() => parseLimits({ ...cfg, ranges: { ...cfg.ranges, voltageV: { min: 260, max: 200 } } })).toThrow(
      'config/ingest.yaml: ingest.ranges.voltageV: expected min <= max, got [260, 200]',
    );
  });

  it('follows the configured ranges, not fixed ones', () => {
    const tight = { ...LIMITS, ranges: { ...RANGES, voltageV: { min: 200, max: 260 } } };
    const at = (v: number) => parseMessage(meterTopic, buf({ ...good, voltageV: v }), NOW, tight);
    expect(at(199.9).rejections.map((r) => r.reason)).toEqual(['bad_value']);
    expect(at(200).readings.length).toBe(1);
    expect(at(260).readings.length).toBe(1);
    expect(at(260.1).rejections.map((r) => r.reason)).toEqual(['bad_value']);
  });

  it('stores -0 registers and values as 0', () => {
    const p = parseMessage(
      meterTopic,
      buf('{"meterId":"M-1","ts":"2026-11-26T02:45:00Z","importWh":-0,"exportWh":-0,"seq":-0,"powerW":-0,"currentA":-0}'),
      NOW,
      LIMITS,
    );
    expect(p.rejections).toEqual([]);
    const r = p.readings[0];
    for (const v of [r?.importWh, r?.exportWh, r?.seq, r?.powerW, r?.currentA]) expect(Object.is(v, 0)).toBe(true);
  });

  it('rejects non-finite registers as too large (1e999 overflows to Infinity)', () => {
    const p = parseMessage(meterTopic, buf('{"meterId":"M-1","ts":"2026-11-26T02:45:00Z","importWh":1e999}'), NOW, LIMITS);
    expect(p.rejections.map((r) => [r.reason, r.detail])).toEqual([['register_too_large', 'importWh: Infinity is above 2^53-1']]);
  });

  it('keeps a bad_value element out of a batch and its good neighbours of the same meter in order', () => {
    const p = parseMessage(
      conc,
      buf([
        { ...good, ts: NOW - 1_800_000, importWh: 1000 },
        { ...good, ts: NOW - 900_000, importWh: 999_999_999, voltageV: 1e308 },
        { ...good, ts: NOW, importWh: 1250 },
      ]),
      NOW,
      LIMITS,
    );
    expect(p.readings.map((r) => r.importWh)).toEqual([1000, 1250]);
    expect(p.rejections.map((r) => [r.reason, r.index])).toEqual([['bad_value', 1]]);
  });

  it('reads __proto__ and constructor keys as plain data, never as the prototype', () => {
    const p = parseMessage(
      meterTopic,
      buf('{"meterId":"M-1","ts":"2026-11-26T02:45:00Z","importWh":5,"__proto__":{"voltageV":1e308,"polluted":1},"constructor":{"prototype":{"x":1}}}'),
      NOW,
      LIMITS,
    );
    expect(p.readings).toEqual([{ meterId: 'M-1', ts: Date.parse('2026-11-26T02:45:00Z'), importWh: 5 }]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('parseMessage on the events topic', () => {
  const evTopic = { kind: 'meterEvents', meterId: 'M-1' } as const;
  const orders = { kind: 'exchangeOrders', meterId: 'M-1' } as const;
  it('accepts a last gasp', () => {
    const p = parseMessage(evTopic, buf({ meterId: 'M-1', ts: '2026-11-26T02:17:41Z', event: 'lastGasp' }), NOW, LIMITS);
    expect(p.events).toEqual([{ meterId: 'M-1', ts: Date.parse('2026-11-26T02:17:41Z'), event: 'lastGasp' }]);
  });
  it('rejects an unknown event name', () => {
    const p = parseMessage(evTopic, buf({ meterId: 'M-1', ts: '2026-11-26T02:17:41Z', event: 'explode' }), NOW, LIMITS);
    expect(p.rejections.map((r) => r.reason)).toEqual(['bad_event']);
  });
  it('accepts a meter exchange with its install, removal and export reads on the head-end topic', () => {
    const ts = '2026-11-26T02:15:00Z';
    const p = parseMessage(
      orders,
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
    const p = parseMessage(orders, buf({ meterId: 'M-1', ts: '2026-11-26T02:15:00Z', event: 'meterExchange', ...extra }), NOW, LIMITS);
    expect(p.events).toEqual([]);
    expect(p.rejections).toEqual([expect.objectContaining({ reason, detail, meterId: 'M-1' })]);
  });
  it("dead-letters a meter exchange on the meter's own events topic, however well formed", () => {
    const order = { meterId: 'M-1', ts: '2026-11-26T02:15:00Z', event: 'meterExchange', installWh: 21, removalWh: 1_234_567 };
    const p = parseMessage(evTopic, buf([order, { meterId: 'M-1', ts: '2026-11-26T02:17:41Z', event: 'lastGasp' }]), NOW, LIMITS);
    expect(p.events).toEqual([{ meterId: 'M-1', ts: Date.parse('2026-11-26T02:17:41Z'), event: 'lastGasp' }]);
    expect(p.rejections).toEqual([
      {
        reason: 'exchange_not_from_headend',
        meterId: 'M-1',
        index: 0,
        item: order,
        detail: 'event: meterExchange is a head-end work order, accepted only on headend/meters/M-1/exchange',
      },
    ]);
  });
  it('takes only meter exchanges on the head-end topic', () => {
    const p = parseMessage(orders, buf({ meterId: 'M-1', ts: '2026-11-26T02:17:41Z', event: 'lastGasp' }), NOW, LIMITS);
    expect(p.events).toEqual([]);
    expect(p.rejections.map((r) => r.reason)).toEqual(['bad_event']);
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
