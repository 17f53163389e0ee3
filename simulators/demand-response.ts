import type { CustomerClass } from '../src/contracts/registry.js';
import type { Fleet } from './fleet.js';
import { Rng } from './prng.js';
import { drWindows, ScenarioError, type ResolvedScenario } from './scenario.js';
import { isoSeconds } from './time-spec.js';

/**
 * Demand response in the simulated fleet: who is called to each event, who answers and by how much, decided from
 * the seed before the first message (a stream of its own, so adding an event changes no load, anomaly or fault);
 * the engine then sheds the responders' load in the window and books, per participant, the energy the import
 * register counted and what it would have counted without the event (dr.jsonl).
 */

export interface DrParticipation {
  /** Position of the meter in `Fleet.meters`. */
  meter: number;
  responded: boolean;
  /** Share of the load shed in the window (0 for a participant that ignored the call). */
  cut: number;
}

export interface DrPlanEvent {
  id: string;
  startMs: number;
  endMs: number;
  rebound: number;
  reboundEndMs: number;
  /** By meter position. */
  participants: DrParticipation[];
}

const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** Every event's participants, responders and cuts; same fleet, scenario and seed → same plan. */
export function planDemandResponse(fleet: Fleet, s: ResolvedScenario): DrPlanEvent[] {
  const specs = s.demandResponse?.events ?? [];
  const windows = drWindows(s, s.fromMs, s.toMs);
  return specs.map((e, i) => {
    const w = windows[i];
    if (w === undefined) throw new ScenarioError(`internal: demandResponse.events.${i} has no window`);
    // One stream per event, so adding or editing one event leaves the others' draws as they were.
    const rng = new Rng(s.seed, `dr:${i}`);
    const classes = e.participants.classes === undefined ? undefined : new Set<CustomerClass>(e.participants.classes);
    const customers = e.participants.customers === undefined ? undefined : new Set(e.participants.customers);
    const eligible = fleet.meters.filter((m) => (classes === undefined || classes.has(m.class)) && (customers === undefined || customers.has(m.customerId)));
    const count = Math.round((e.participants.share ?? 1) * eligible.length);
    if (count === 0) throw new ScenarioError(`demandResponse.events.${i}.participants: selects no customer of the fleet`);
    const chosen = rng
      .shuffle(eligible.map((m) => m.index))
      .slice(0, count)
      .sort((a, b) => a - b);
    const responders = new Set(rng.shuffle([...chosen]).slice(0, Math.round(e.responders * count)));
    const participants = chosen.map((meter) => {
      const responded = responders.has(meter);
      const [lo, hi] = e.cut;
      return { meter, responded, cut: responded ? (lo === hi ? lo : rng.range(lo, hi)) : 0 };
    });
    return { id: w.id, startMs: w.startMs, endMs: w.endMs, rebound: e.rebound ?? 0, reboundEndMs: w.reboundEndMs, participants };
  });
}

/** What the engine books per participant (Wh as the import register counts them). */
export interface DrTally {
  /** Register increments in the window: what the meter's intervals there add up to. */
  actualWh: number;
  /** Counterfactual minus actual in the window (0 for a participant that did not respond). */
  reductionWh: number;
  /** Actual minus counterfactual over the rebound after the window. */
  reboundWh: number;
  /** Quarter hours of the window and of the rebound simulated (short when the run ended or was stopped early). */
  steps: number;
  reboundSteps: number;
}

export interface DrTruthParticipant {
  customerId: string;
  meterId: string;
  customerClass: CustomerClass;
  intervalMinutes: number;
  hasPv: boolean;
  responded: boolean;
  /** Share of the load shed (0 when it ignored the call). */
  cut: number;
  /** What the import register would have counted in [start, end) without the event, Wh. */
  counterfactualWh: number;
  /** What it counted (the sum of the meter's intervals in the window, when they are on its grid), Wh. */
  actualWh: number;
  /** counterfactualWh − actualWh: the true reduction a settlement should find. */
  reductionWh: number;
  /** Extra energy over [end, reboundEnd), Wh. */
  reboundWh: number;
}

/** One line of dr.jsonl. */
export interface DrTruthRecord {
  id: string;
  kind: 'demandResponse';
  start: string;
  end: string;
  startMs: number;
  endMs: number;
  reboundEnd: string;
  reboundEndMs: number;
  rebound: number;
  /** False when the run stopped before the end of the window (or of the rebound): the energies are partial. */
  complete: boolean;
  participantCount: number;
  responderCount: number;
  totals: { counterfactualWh: number; actualWh: number; reductionWh: number; reboundWh: number };
  participants: DrTruthParticipant[];
}

/** The truth of each event from the plan and the engine's tallies (keyed `<event index>:<meter>`). */
export function drTruth(fleet: Fleet, plan: readonly DrPlanEvent[], tally: (event: number, meter: number) => DrTally | undefined): DrTruthRecord[] {
  return plan.map((e, i) => {
    const steps = (e.endMs - e.startMs) / 900_000;
    const reboundSteps = (e.reboundEndMs - e.endMs) / 900_000;
    let complete = true;
    const participants = e.participants.map((p): DrTruthParticipant => {
      const m = fleet.meters[p.meter];
      if (m === undefined) throw new ScenarioError(`internal: demand-response event ${e.id} names meter #${p.meter}`);
      const t = tally(i, p.meter) ?? { actualWh: 0, reductionWh: 0, reboundWh: 0, steps: 0, reboundSteps: 0 };
      if (t.steps < steps || t.reboundSteps < reboundSteps) complete = false;
      return {
        customerId: m.customerId,
        meterId: m.meterId,
        customerClass: m.class,
        intervalMinutes: m.intervalMinutes,
        hasPv: m.hasPv,
        responded: p.responded,
        cut: p.cut,
        counterfactualWh: round(t.actualWh + t.reductionWh, 1),
        actualWh: t.actualWh,
        reductionWh: round(t.reductionWh, 1),
        reboundWh: round(t.reboundWh, 1),
      };
    });
    const total = (k: 'counterfactualWh' | 'actualWh' | 'reductionWh' | 'reboundWh') =>
      round(
        participants.reduce((s, p) => s + p[k], 0),
        1,
      );
    return {
      id: e.id,
      kind: 'demandResponse',
      start: isoSeconds(e.startMs),
      end: isoSeconds(e.endMs),
      startMs: e.startMs,
      endMs: e.endMs,
      reboundEnd: isoSeconds(e.reboundEndMs),
      reboundEndMs: e.reboundEndMs,
      rebound: e.rebound,
      complete,
      participantCount: participants.length,
      responderCount: participants.filter((p) => p.responded).length,
      totals: { counterfactualWh: total('counterfactualWh'), actualWh: total('actualWh'), reductionWh: total('reductionWh'), reboundWh: total('reboundWh') },
      participants,
    };
  });
}

export function drJsonl(records: readonly DrTruthRecord[]): string {
  return records.map((r) => JSON.stringify(r)).join('\n') + (records.length > 0 ? '\n' : '');
}
