import { describe, expect, it } from 'vitest';
import { Rng } from '../../simulators/prng.js';
import { fnv1a32 } from '../../src/domain/shard.js';
import { isoSeconds, parseDuration, resolveTimePoint, TimeSpecError } from '../../simulators/time-spec.js';
import { loadScenario, ScenarioError } from '../../simulators/scenario.js';
import { parseSimulateArgs, SimUsageError } from '../../simulators/cli.js';
import { answerPayload, parseReadCommand } from '../../simulators/responder.js';

describe('prng', () => {
  it.each([
    ['', 0x811c9dc5],
    ['a', 0xe40c292c],
    ['foobar', 0xbf9cf968],
  ])('fnv1a32(%j) = %i', (s, h) => {
    expect(fnv1a32(s)).toBe(h);
  });

  it('same seed and label → same sequence; another label or seed → another', () => {
    const seq = (r: Rng) => Array.from({ length: 5 }, () => r.u32());
    expect(seq(new Rng(42, 'x'))).toEqual(seq(new Rng(42, 'x')));
    expect(seq(new Rng(42, 'x'))).not.toEqual(seq(new Rng(42, 'y')));
    expect(seq(new Rng(42, 'x'))).not.toEqual(seq(new Rng(43, 'x')));
    expect(seq(new Rng(42).fork('a'))).toEqual(seq(new Rng(42, 'a')));
  });

  it('int stays in its inclusive range and hits both ends; shuffle is a permutation', () => {
    const r = new Rng('t');
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) seen.add(r.int(3, 7));
    expect([...seen].sort()).toEqual([3, 4, 5, 6, 7]);
    const items = Array.from({ length: 50 }, (_, i) => i);
    const shuffled = r.shuffle(items);
    expect(shuffled).not.toEqual(items);
    expect([...shuffled].sort((a, b) => a - b)).toEqual(items);
  });

  it('normal() has mean ~0 and sd ~1', () => {
    const r = new Rng(1);
    const xs = Array.from({ length: 20000 }, () => r.normal());
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(sd - 1)).toBeLessThan(0.03);
  });
});

describe('time specs', () => {
  it.each([
    ['90s', 90_000],
    ['15m', 900_000],
    ['1h', 3_600_000],
    ['1.5h', 5_400_000],
    ['14d', 1_209_600_000],
    ['2w', 1_209_600_000],
  ])('parseDuration(%s) = %i', (spec, ms) => {
    expect(parseDuration(spec)).toBe(ms);
  });

  it.each(['', '15', 'm', '15x', '-1h', '1h30m'])('parseDuration(%j) throws', (spec) => {
    expect(() => parseDuration(spec)).toThrow(TimeSpecError);
  });

  const now = Date.parse('2026-05-01T12:00:00Z');
  it.each([
    ['now', undefined, now],
    ['-1d', undefined, now - 86_400_000],
    ['+6w', Date.parse('2026-01-05T00:00:00Z'), Date.parse('2026-02-16T00:00:00Z')],
    ['2026-01-05', undefined, Date.parse('2026-01-05T00:00:00Z')],
    ['2026-01-05T01:00:00+01:00', undefined, Date.parse('2026-01-05T00:00:00Z')],
  ])('resolveTimePoint(%s)', (spec, base, ms) => {
    expect(resolveTimePoint(spec, { now, base })).toBe(ms);
  });

  it.each(['yesterday', '2026-01-05T00:00:00', '+1d'])('resolveTimePoint(%s) without a zone or base throws', (spec) => {
    expect(() => resolveTimePoint(spec, { now })).toThrow(TimeSpecError);
  });

  it('isoSeconds drops zero milliseconds only', () => {
    expect(isoSeconds(Date.parse('2026-01-05T00:15:00Z'))).toBe('2026-01-05T00:15:00Z');
    expect(isoSeconds(Date.parse('2026-01-05T00:15:00.250Z'))).toBe('2026-01-05T00:15:00.250Z');
  });
});

describe('scenarios', () => {
  it.each(['demo', 'ci', 'small'])('simulators/scenarios/%s.yaml loads', (name) => {
    const s = loadScenario(`simulators/scenarios/${name}.yaml`, {}, { now: Date.parse('2026-05-01T12:34:00Z') });
    expect(s.name).toBe(name);
    expect(s.toMs).toBeGreaterThan(s.fromMs);
  });

  it('ci.yaml is at least 300 meters x 6 weeks at 15 minutes', () => {
    const s = loadScenario('simulators/scenarios/ci.yaml', {}, { now: 0 });
    expect(s.fleet.meters).toBeGreaterThanOrEqual(300);
    expect(s.toMs - s.fromMs).toBe(42 * 86_400_000);
    expect(s.intervals).toEqual([15]);
  });

  it('the demo starts a day before now and ends now, aligned to the hour, live from 20 h in', () => {
    const now = Date.parse('2026-05-01T12:34:56Z');
    const s = loadScenario('simulators/scenarios/demo.yaml', {}, { now });
    expect(s.fromMs).toBe(Date.parse('2026-04-30T12:00:00Z'));
    expect(s.toMs).toBe(Date.parse('2026-05-01T12:30:00Z'));
    expect(s.fleet.meters).toBe(500);
    expect(s.speed).toBe(60);
    // The first 20 hours are backfilled, the rest live.
    expect(s.liveFromMs).toBe(Date.parse('2026-05-01T08:00:00Z'));
    expect(loadScenario('simulators/scenarios/ci.yaml', {}, { now }).speed).toBeUndefined();
    expect(loadScenario('simulators/scenarios/ci.yaml', {}, { now }).liveFromMs).toBeUndefined();
  });

  it('overrides replace scenario values', () => {
    const s = loadScenario(
      'simulators/scenarios/small.yaml',
      { meters: 7, interval: '30m', seed: 'abc', batch: 5, from: '2026-01-01T00:00:00Z', to: '+2d' },
      { now: 0 },
    );
    expect([s.fleet.meters, s.intervals, s.seed, s.batch, s.fromMs, s.toMs]).toEqual([
      7,
      [30],
      'abc',
      5,
      Date.parse('2026-01-01T00:00:00Z'),
      Date.parse('2026-01-03T00:00:00Z'),
    ]);
  });

  it.each([
    [{ fleet: { metres: 3 } }, 'fleet.metres: unknown key'],
    [{ anomalies: { spike: { clear: { factor: [5, 1] } } } }, 'anomalies.spike.clear.factor: range [5, 1] must have lo ≤ hi'],
    [{ timezone: 'Mars/Olympus' }, 'timezone: expected an IANA zone'],
    [{ from: '2026-01-02T00:00:00Z', to: '2026-01-01T00:00:00Z' }, 'must be after from'],
    [{ fleet: { meters: 0 } }, 'fleet.meters'],
    [{ transport: { malformed: { variants: ['nope'] } } }, 'transport.malformed.variants.0'],
  ])('a bad scenario fails naming the key: %j', (doc, message) => {
    expect(() => loadScenario(doc, {}, { now: 0 })).toThrow(ScenarioError);
    expect(() => loadScenario(doc, {}, { now: 0 })).toThrow(message);
  });
});

describe('simulate flags', () => {
  it('parses every flag', () => {
    const o = parseSimulateArgs([
      '--meters',
      '250',
      '--interval',
      '30m',
      '--from',
      '2026-01-01T00:00:00Z',
      '--to',
      '+1d',
      '--seed',
      '9',
      '--batch',
      '50',
      '--speed',
      '120',
      '--out',
      '/tmp/x',
      '--mqtt-url',
      'mqtt://127.0.0.1:1999',
      '--timezone',
      'UTC',
      '--max-in-flight',
      '64',
      '--no-responder',
    ]);
    expect(o).toMatchObject({
      meters: 250,
      interval: '30m',
      from: '2026-01-01T00:00:00Z',
      to: '+1d',
      seed: 9,
      batch: 50,
      speed: 120,
      outDir: '/tmp/x',
      mqttUrl: 'mqtt://127.0.0.1:1999',
      timezone: 'UTC',
      maxInFlight: 64,
      respond: false,
      help: false,
    });
    expect(o.backfill).toBeUndefined();
    expect(parseSimulateArgs(['--backfill']).backfill).toBe(true);
    expect(parseSimulateArgs([]).backfill).toBeUndefined();
    expect(parseSimulateArgs(['--seed', 'north']).seed).toBe('north');
    expect(parseSimulateArgs(['--from', '-2d', '--to', 'now'])).toMatchObject({ from: '-2d', to: 'now' });
    expect(parseSimulateArgs(['--from=-90m'])).toMatchObject({ from: '-90m' });
  });

  it.each([
    [['--meters', 'ten'], '--meters'],
    [['--meters', '0'], '--meters'],
    [['--interval', '20m'], '--interval'],
    [['--interval', 'soon'], '--interval'],
    [['--speed', '-2'], '--speed'],
    [['--speed', '10', '--backfill'], '--speed'],
    [['--batch', '1.5'], '--batch'],
    [['--mqtt-url', 'http://x'], '--mqtt-url'],
    [['--metres', '5'], '--metres'],
    [['--meters'], '--meters'],
  ])('%j fails naming %s', (argv, flag) => {
    let err: unknown;
    try {
      parseSimulateArgs(argv);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SimUsageError);
    expect(err instanceof SimUsageError ? err.flag : '').toBe(flag);
  });
});

describe('read responder payloads', () => {
  it.each([
    ['{"cmd":"read","requestId":"r-1"}', 'r-1'],
    ['{"cmd":"reset","requestId":"r-1"}', undefined],
    ['{"cmd":"read"}', undefined],
    ['{"cmd":"read","requestId":7}', undefined],
    ['not json', undefined],
  ])('parseReadCommand(%s)', (raw, id) => {
    expect(parseReadCommand(raw)).toBe(id);
  });

  it('adds the requestId to the reading, or answers with an error', () => {
    const reading = '{"meterId":"M-1","ts":"2026-01-05T00:15:00Z","importWh":5}';
    expect(JSON.parse(answerPayload('r"1', { reading }))).toEqual({ meterId: 'M-1', ts: '2026-01-05T00:15:00Z', importWh: 5, requestId: 'r"1' });
    expect(JSON.parse(answerPayload('r2', { error: 'no reading yet' }))).toEqual({ requestId: 'r2', error: 'no reading yet' });
  });
});
