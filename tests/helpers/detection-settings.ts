import type { DetectionConfig } from '../../src/contracts/config-detection.js';
import type { MeterInfo } from '../../src/domain/meter-state.js';
import { compileSettings } from '../../src/domain/stream-settings.js';
import type { WorkSettings } from '../../src/stream/shard-work.js';

const flat = (v: number): number[] => Array.from({ length: 24 }, () => v);

/** Detection settings spelled out for unit tests (independent of config/detection.yaml's tuning). */
export function testDetectionConfig(over: Partial<DetectionConfig> = {}): DetectionConfig {
  return {
    intervals: { defaultMinutes: 15, lateToleranceMinutes: 120, linearGapMaxMinutes: 120, gapFactor: 1.5, maxFutureMinutes: 10 },
    watermark: { latenessMinutes: 30 },
    baseline: {
      slots: 'hourDaytype',
      warmupDays: 21,
      minSlotSamples: 4,
      alphaMin: 0.05,
      clipK: 3,
      minSpreadWhPerHour: 50,
      priorSpreadRatio: 0.5,
      classProfiles: {
        residential: { weekday: flat(400), weekend: flat(600) },
        commercial: { weekday: flat(4000), weekend: flat(2000) },
        industrial: { weekday: flat(40000), weekend: flat(30000) },
        critical: { weekday: flat(20000), weekend: flat(20000) },
      },
    },
    spike: { factor: 3, zScore: 6, minDemandW: 2000, majorZScore: 12 },
    drop: { windowHours: 12, ratio: 0.5, clearRatio: 0.7, minExpectedWh: 1000 },
    flatline: { minHours: 6, minExpectedWh: 1500 },
    reverseFlow: { minExportWh: 10 },
    voltage: { nominalV: 230, tolerance: 0.1, minConsecutive: 3, majorTolerance: 0.15 },
    silent: { intervals: 4 },
    customerPeak: { ratio: 1, majorRatio: 1.2 },
    feederOverload: { powerFactor: 1, warningRatio: 0.9, majorRatio: 1, criticalRatio: 1.2, intervalMinutes: 15, retainHours: 6 },
    systemPeak: { thresholdKw: 1000, warningRatio: 0.9 },
    worker: {
      batchEntries: 100,
      batchReadings: 20000,
      idleMs: 100,
      checkpointMs: 1000,
      leaseMs: 3000,
      eventsKeepSeconds: 3600,
      dlqMaxLen: 1000,
      statsSeconds: 10,
    },
    ...over,
  };
}

export function testMeter(over: Partial<MeterInfo> = {}): MeterInfo {
  return {
    meterId: 'M-1',
    customerId: 'C-1',
    class: 'residential',
    transformerId: 'T-1',
    feederId: 'F-1',
    hasPv: false,
    contractKw: 10,
    intervalMinutes: 15,
    ...over,
  };
}

/** The stream shard's settings for tests: the test detection config in UTC, aggregation over `aggMs`, one band. */
export function testWorkSettings(aggMs: number): WorkSettings {
  return {
    settings: compileSettings(testDetectionConfig(), 'UTC'),
    watermarkLatenessMs: 30 * 60_000,
    maxFutureMs: 10 * 60_000,
    aggMs,
    band: () => 'flat',
    dayZone: () => 'UTC',
  };
}
