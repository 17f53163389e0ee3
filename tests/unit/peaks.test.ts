import { describe, expect, it } from 'vitest';
import { HOUR_MS, MINUTE_MS } from '../../src/domain/local-time.js';
import { aggregationSlots, judgeSystem, judgeTransformer, netDemandW } from '../../src/domain/peaks.js';
import { testDetectionConfig } from '../helpers/detection-settings.js';

const cfg = testDetectionConfig();
const T0 = Date.UTC(2026, 10, 2);
const Q = 15 * MINUTE_MS;

describe('load peaks', () => {
  const base = { transformerId: 'T-9', feederId: 'F-2', start: T0, aggMs: Q, ratingKva: 100 };
  it.each([
    { kw: 89.9, severity: undefined },
    { kw: 90, severity: 'warning' },
    { kw: 100, severity: 'major' },
    { kw: 120, severity: 'critical' },
    { kw: -95, severity: 'warning' }, // reverse power flow loads the transformer too
  ])('transformer at $kw kW of 100 kVA → $severity', ({ kw, severity }) => {
    const j = judgeTransformer({ ...base, netW: kw * 1000 }, false, cfg);
    expect(j.severity).toBe(severity);
    expect(j.event?.id).toBe(severity === undefined ? undefined : `feederOverload:T-9:${T0 + Q}:firing`);
    expect(j.ratingKw).toBe(100);
  });

  it('clears a transformer once after it fired', () => {
    const j = judgeTransformer({ ...base, netW: 50_000 }, true, cfg);
    expect([j.event?.status, j.event?.score, j.utilization, j.active]).toEqual(['clear', 0.5, 0.5, false]);
    expect(judgeTransformer({ ...base, netW: 50_000 }, false, cfg).event).toBeUndefined();
  });

  it.each([
    { kw: 899, severity: undefined },
    { kw: 900, severity: 'warning' },
    { kw: 1500, severity: 'major' },
  ])('fleet at $kw kW of a 1000 kW threshold → $severity', ({ kw, severity }) => {
    const j = judgeSystem({ start: T0, aggMs: Q, netW: kw * 1000 }, false, cfg);
    expect(j.event?.severity).toBe(severity);
    expect(j.event?.subject ?? 'system').toBe('system');
  });

  it('a 60-min meter interval feeds four 15-min load intervals with its average net demand', () => {
    expect(aggregationSlots(T0, T0 + HOUR_MS, Q).map((t) => (t - T0) / Q)).toEqual([0, 1, 2, 3]);
    expect(netDemandW(1500, 300, HOUR_MS)).toBe(1200);
    expect(netDemandW(300, 0, Q)).toBe(1200);
  });
});
