import { describe, expect, it } from 'vitest';
import { BillingCloser } from '../../src/billing/closer.js';
import type { BillingState, MonthState } from '../../src/billing/state.js';
import { BillingConfig } from '../../src/contracts/config-billing.js';
import { InsightsConfig } from '../../src/contracts/config-insights.js';
import { TariffsConfigSchema } from '../../src/contracts/config-tariffs.js';
import type { CloseMonthJob } from '../../src/contracts/billing.js';
import { compileTiers } from '../../src/domain/profiles.js';
import { compileTariffOffers } from '../../src/domain/tariff-pricing.js';
import { compileTariffs } from '../../src/domain/tariffs.js';
import { loadSection } from '../../src/shared/config.js';
import { createLogger } from '../../src/shared/logger.js';

/**
 * The month close's state machine with the billing state in memory: a close that late data overtook still finishes
 * (it writes; the month stays dirty) and the tick schedules dirty months again. Profiles themselves:
 * tests/integration/profiles-api.test.ts.
 */

const tariffsCfg = loadSection('tariffs', TariffsConfigSchema, {});
const tariffs = compileTariffs(tariffsCfg, 'UTC');

function memoryState(): BillingState & { months: Map<string, MonthState> } {
  const months = new Map<string, MonthState>();
  return {
    months,
    watermark: async () => undefined,
    lastClosedDay: async () => undefined,
    markDayClosed: async () => {},
    periodState: async () => undefined,
    markPeriod: async () => {},
    monthState: async (tz, m) => months.get(`${tz}|${m}`),
    markMonth: async (tz, m, s) => {
      months.set(`${tz}|${m}`, s);
    },
    finishMonth: async (tz, m, at) => {
      if (months.get(`${tz}|${m}`) !== 'closing') return false;
      months.set(`${tz}|${m}`, at);
      return true;
    },
    dirtyMonths: async () =>
      [...months].filter(([, v]) => v === 'dirty').map(([k]) => ({ timezone: k.slice(0, k.lastIndexOf('|')), month: k.slice(k.lastIndexOf('|') + 1) })),
  };
}

function closerWith(state: BillingState, onRead: () => Promise<void>, enqueued: CloseMonthJob[]): BillingCloser {
  return new BillingCloser({
    source: {
      metersWithIntervals: async () => [],
      metersWithStored: async () => {
        await onRead();
        return [];
      },
      earliestInterval: async () => undefined,
      intervals: async () => new Map(),
      readsAt: async () => new Set(),
      stored: async () => [],
      profiles: async () => [],
    },
    writer: { write: () => {}, flush: async () => {} },
    state,
    meters: { allMeterIds: async () => [], getMeters: async () => new Map() },
    tariffs,
    cfg: loadSection('billing', BillingConfig, {}),
    log: createLogger({ level: 'silent' }),
    now: () => 1_000,
    enqueueCloseDay: async () => {},
    enqueueClosePeriod: async () => {},
    insights: {
      tiers: compileTiers(loadSection('insights', InsightsConfig, {}).segments),
      offers: compileTariffOffers(tariffsCfg, tariffs),
      enqueueCloseMonth: async (job) => {
        enqueued.push(job);
      },
    },
  });
}

describe('month close and late data', () => {
  it('a close with no late data marks the month profiled', async () => {
    const state = memoryState();
    await closerWith(state, async () => {}, []).closeMonth({ timezone: 'UTC', month: '2026-03' });
    expect(state.months.get('UTC|2026-03')).toBe(1_000);
  });

  it('late data during the close: it finishes without throwing, the month stays dirty, and the tick schedules it again', async () => {
    const state = memoryState();
    const enqueued: CloseMonthJob[] = [];
    // A recompute marks the month dirty while the close reads.
    const closer = closerWith(state, () => state.markMonth('UTC', '2026-03', 'dirty'), enqueued);
    await expect(closer.closeMonth({ timezone: 'UTC', month: '2026-03' })).resolves.toEqual({ meters: 0, written: 0 });
    expect(state.months.get('UTC|2026-03')).toBe('dirty');
    await closer.tick();
    expect(enqueued).toEqual([{ timezone: 'UTC', month: '2026-03' }]);
  });

  it('the tick leaves profiled and closing months alone', async () => {
    const state = memoryState();
    state.months.set('UTC|2026-02', 5);
    state.months.set('UTC|2026-03', 'closing');
    const enqueued: CloseMonthJob[] = [];
    await closerWith(state, async () => {}, enqueued).tick();
    expect(enqueued).toEqual([]);
  });
});
