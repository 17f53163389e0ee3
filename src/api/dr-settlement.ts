import type { DrConfig } from '../contracts/config-dr.js';
import type { DrEventRecord } from '../contracts/dr.js';
import type { CustomerRecord } from '../contracts/registry.js';
import type { BillingInterval } from '../domain/billing.js';
import { type CblResult, settleEvent, settlementTotals } from '../domain/cbl.js';
import { DAY_MS, gridOffsetMs, localDay } from '../domain/local-time.js';
import { tariffFor, type Tariffs } from '../domain/tariffs.js';
import type { DrStore } from '../shared/dr-store.js';
import type { Influx } from '../shared/influx.js';
import { readIntervals } from '../shared/interval-store.js';
import type { RegistryStore } from '../shared/registry.js';
import { ZONE_MARGIN_MS } from './day-range.js';
import { customerIntervals } from '../domain/customer-load.js';

/**
 * A demand-response event's settlement for GET /api/v1/dr/events/{id}/settlement: the participants' summed intervals
 * read back from InfluxDB and settled against their customer baseline load (src/domain/cbl.ts).
 */

/** Meters per InfluxDB query when reading the participants' intervals. */
const METERS_PER_QUERY = 200;
/** Participants read and settled at once: a month and a half of 15-minute intervals each, dropped after settling. */
const CUSTOMERS_PER_CHUNK = 100;

/** The customers' meters and their intervals over [fromMs, toMs), summed per customer on its longest interval. */
async function participantLoads(influx: Influx, meters: ReadonlyMap<string, CustomerRecord[]>, fromMs: number, toMs: number) {
  const durations = new Map<string, number>();
  for (const list of meters.values()) for (const m of list) durations.set(m.meterId, m.intervalMinutes * 60_000);
  const perMeter = new Map<string, BillingInterval[]>();
  const ids = [...durations.keys()];
  for (let i = 0; i < ids.length; i += METERS_PER_QUERY) {
    const part = new Map(ids.slice(i, i + METERS_PER_QUERY).map((id) => [id, durations.get(id) ?? 0]));
    for (const [id, list] of await readIntervals(influx, part, fromMs, toMs)) perMeter.set(id, list);
  }
  const out = new Map<string, { intervalMs: number; intervals: BillingInterval[] }>();
  for (const [customerId, list] of meters) {
    const intervalMs = Math.max(0, ...list.map((m) => m.intervalMinutes * 60_000));
    out.set(customerId, {
      intervalMs,
      intervals: customerIntervals(
        list.map((m) => perMeter.get(m.meterId) ?? []),
        intervalMs,
      ),
    });
  }
  return out;
}

/** Local dates an event touches (its start day and, past midnight, its end day). */
function eventDays(zone: string, e: { startMs: number; endMs: number }): string[] {
  return [...new Set([localDay(zone, e.startMs), localDay(zone, e.endMs - 1)])];
}

const methodText = (cfg: DrConfig['cbl']): string => {
  const a = cfg.adjustment;
  const adj = a.mode === 'none' ? 'no same-day adjustment' : `${a.mode} same-day adjustment over ${a.windowHours} h ending ${a.gapHours} h before`;
  return `High ${cfg.weekday.x} of ${cfg.weekday.y} (weekday), High ${cfg.weekend.x} of ${cfg.weekend.y} (weekend/holiday), ${adj}, ${cfg.lookbackDays}-day search`;
};

export const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * A participant whose intervals do not start and end with the window (an hourly meter and an event at :15) cannot be
 * settled on it. Interval boundaries are on the grid of the deployment's zone (the stream worker's, `gridOffsetMs`).
 */
function unsettleable(intervalMs: number, e: DrEventRecord, zone: string): boolean {
  if (intervalMs <= 0) return true;
  const offset = gridOffsetMs(zone, intervalMs);
  return [e.startMs, e.endMs].some((t) => (((t - offset) % intervalMs) + intervalMs) % intervalMs !== 0);
}

/**
 * A participant the CBL cannot settle on this window: its meters' interval does not divide the event, or it has no
 * meters in the registry any more. Final: no data that arrives later changes it, so it does not hold the settlement
 * provisional as missing event data does.
 */
function unsettleableResult(): Omit<CblResult, 'quality'> & { quality: 'unsettleable' } {
  return {
    quality: 'unsettleable',
    dayType: 'weekday',
    baselineWh: 0,
    actualWh: 0,
    reductionWh: 0,
    requestedWh: null,
    performance: 0,
    performanceBasis: 'baseline',
    selectedDays: [],
    candidateDays: [],
    excludedDays: [],
    adjustmentWh: 0,
    intervals: [],
  };
}

export interface SettlementContext {
  cfg: DrConfig;
  gridMs: number;
  zone: string;
  holidays: readonly string[];
  store: DrStore;
  registry: RegistryStore;
  influx: Influx;
  /** A participant's days are cut in its tariff's zone. */
  tariffs: Tariffs;
}

/**
 * The settlement of an ended event: each participant's intervals over the CBL search window and the event, its other
 * events' days kept out of its like days, settled by src/domain/cbl.ts; `provisional` while event data is missing and
 * `finalAfterHours` has not passed.
 */
export async function settleDrEvent(c: SettlementContext, e: DrEventRecord, now: number) {
  const { cfg, gridMs, zone, holidays, store } = c;
  const lookbackMs = (cfg.cbl.lookbackDays + 1) * DAY_MS + ZONE_MARGIN_MS;
  const meters = new Map(await Promise.all(e.customerIds.map(async (id) => [id, await c.registry.metersOfCustomer(id)] as const)));
  // Earlier events of each participant (within the search window) are never its like days.
  const others = (await store.startingBetween(e.startMs - lookbackMs, e.endMs)).filter((o) => o.id !== e.id);
  // Its meters share a tariff zone (a site, or a meter and its replacement); the deployment's for an unknown tariff.
  const zoneOf = (id: string): string => {
    const first = meters.get(id)?.[0];
    return first === undefined ? zone : tariffFor(c.tariffs, first.tariff).timezone;
  };
  const intervalOf = (id: string): number => Math.max(0, ...(meters.get(id) ?? []).map((m) => m.intervalMinutes * 60_000));
  const settleable = e.customerIds.filter((id) => !unsettleable(intervalOf(id), e, zone));
  const event = { startMs: e.startMs, endMs: e.endMs, timezone: zone, holidays, pastEventDays: [], requestedReductionKw: e.requestedReductionKw };
  const byCustomer = new Map<string, CblResult>();
  for (let i = 0; i < settleable.length; i += CUSTOMERS_PER_CHUNK) {
    const chunk = settleable.slice(i, i + CUSTOMERS_PER_CHUNK);
    const loads = await participantLoads(c.influx, new Map(chunk.map((id) => [id, meters.get(id) ?? []])), e.startMs - lookbackMs, e.endMs);
    const part = settleEvent(
      event,
      chunk.map((customerId) => ({
        customerId,
        intervals: loads.get(customerId)?.intervals ?? [],
        intervalMs: loads.get(customerId)?.intervalMs ?? gridMs,
        pastEventDays: others.filter((o) => o.customerIds.includes(customerId)).flatMap((o) => eventDays(zoneOf(customerId), o)),
        timezone: zoneOf(customerId),
      })),
      cfg.cbl,
    );
    for (const { customerId, ...r } of part.participants) byCustomer.set(customerId, r);
  }
  const t = settlementTotals(event, [...byCustomer.values()]);
  const participants = e.customerIds.map((customerId) => {
    const r = byCustomer.get(customerId) ?? unsettleableResult();
    const ok = r.quality === 'ok';
    // Its share of the request, by baseline among the settled participants.
    const requestedWh = ok && t.requestedWh !== null && t.baselineWh > 0 ? (t.requestedWh * r.baselineWh) / t.baselineWh : null;
    const cutShare = ok && r.baselineWh > 0 ? r.reductionWh / r.baselineWh : 0;
    return {
      customerId,
      meterIds: (meters.get(customerId) ?? []).map((m) => m.meterId),
      timezone: zoneOf(customerId),
      quality: r.quality,
      dayType: r.dayType,
      baselineWh: r.baselineWh,
      actualWh: r.actualWh,
      reductionWh: r.reductionWh,
      cutShare,
      requestedWh,
      performance: requestedWh !== null ? (requestedWh > 0 ? r.reductionWh / requestedWh : 0) : cutShare,
      performanceBasis: requestedWh !== null ? ('requested' as const) : ('baseline' as const),
      adjustmentWh: r.adjustmentWh,
      selectedDays: r.selectedDays,
      candidateDays: r.candidateDays,
      excludedDays: r.excludedDays,
      intervals: r.intervals.map((iv) => ({ ...iv, start: iso(iv.start) })),
    };
  });
  const missing = participants.some((p) => p.quality === 'missing_event_data');
  return {
    eventId: e.id,
    start: iso(e.startMs),
    end: iso(e.endMs),
    status: missing && now < e.endMs + cfg.settlement.finalAfterHours * 3_600_000 ? ('provisional' as const) : ('final' as const),
    method: methodText(cfg.cbl),
    timezone: zone,
    participants,
    totals: {
      ...t,
      participants: e.customerIds.length,
      missingEventData: participants.filter((p) => p.quality === 'missing_event_data').length,
      unsettleable: participants.filter((p) => p.quality === 'unsettleable').length,
    },
  };
}
