import { describe, expect, it } from 'vitest';
import { int, lp } from '../../src/shared/line-protocol.js';
import { intervalLine } from '../../src/stream/shard-work.js';
import { testMeter } from '../helpers/detection-settings.js';

describe('interval line protocol (hot-path builder)', () => {
  it.each([
    {
      meter: { ...testMeter(), tariff: 'default' },
      band: 'flat',
      iv: { start: 1_793_577_600_000, end: 1_793_578_500_000, wh: 123, exportWh: 0, registerWh: 99_123, estimated: false, demandW: 492 },
    },
    {
      meter: { ...testMeter({ meterId: 'M 1,x=y', feederId: 'F\\1', transformerId: 'T=2' }), tariff: 'x' },
      band: 'on peak',
      iv: { start: 1, end: 2, wh: 0, exportWh: 7, registerWh: 0, estimated: true, demandW: 0.125 },
    },
  ])('equals the generic builder for $meter.meterId', ({ meter, band, iv }) => {
    const generic = lp(
      'interval',
      { meter: meter.meterId, feeder: meter.feederId, transformer: meter.transformerId, class: meter.class, band },
      {
        wh: int(iv.wh),
        export_wh: int(iv.exportWh),
        demand_w: iv.demandW,
        register_wh: int(iv.registerWh),
        estimated: iv.estimated,
      },
      iv.start,
    );
    expect(intervalLine(meter, band, iv)).toBe(generic);
  });
});
