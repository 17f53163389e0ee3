import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MqttClient } from 'mqtt';
import { connectMqtt } from '../src/shared/mqtt.js';
import type { MqttTlsFiles } from '../src/shared/config.js';
import { drJsonl } from './demand-response.js';
import { Simulation, type SimMessage } from './engine.js';
import { generateFleet, type Fleet } from './fleet.js';
import { LedgerWriter } from './ledger.js';
import type { Plan } from './plan.js';
import { customersCsv, transformersCsv } from './registry-csv.js';
import { startReadResponder, type ReadResponder } from './responder.js';
import { loadScenario, type ResolvedScenario, type ScenarioOverrides } from './scenario.js';
import { isoSeconds } from './time-spec.js';
import { truthJsonl } from './truth.js';

export interface SimProgress {
  /** Messages published (acknowledged or in flight). */
  messages: number;
  /** Distinct good readings sent (duplicates not counted). */
  readings: number;
  duplicates: number;
  events: number;
  malformed: number;
  /** Messages and batch elements the ingest must dead-letter. */
  rejects: number;
  bytes: number;
  /** Simulated time reached, ms. */
  simTime: number;
  elapsedMs: number;
  /** Readings per second over the last few seconds (live mode sends in bursts, one per interval). */
  readingsPerSec: number;
  done: boolean;
}

export interface SimSummary extends SimProgress {
  mode: 'backfill' | 'live' | 'dry-run';
  scenario: string;
  seed: string | number;
  from: string;
  to: string;
  meters: number;
  transformers: number;
  batch: number;
  /** SHA-256 over every message (`topic\npayload\n`): same scenario and seed → same hash. */
  sha256: string;
  truthRecords: number;
  ledgerRows: number;
  answeredReads: number;
  /** Readings per second over the whole run. */
  averageReadingsPerSec: number;
  /** Publishes never acknowledged (only after an abort with the broker gone). */
  unacknowledged: number;
  aborted: boolean;
  outDir?: string;
}

export interface RunSimulationOptions extends ScenarioOverrides {
  /** Broker URL; not needed for a dry run. */
  mqttUrl?: string;
  mqttUsername?: string;
  mqttPassword?: string;
  /** TLS files for an mqtts:// broker (MQTT_CA_FILE, MQTT_CERT_FILE, MQTT_KEY_FILE). */
  mqttTls?: MqttTlsFiles;
  clientId?: string;
  /** A scenario YAML path, or an already resolved scenario. Without it: the built-in plain fleet. */
  scenario?: string | ResolvedScenario;
  /** Live mode: simulated time runs at `speed` x real time, and never ahead of the wall clock. Default: the scenario's `speed`. */
  speed?: number;
  /** Publish as fast as the broker acknowledges (the default when neither `speed` nor the scenario's `speed` is set). */
  backfill?: boolean;
  /** Generate, hash and write the files without publishing. */
  dryRun?: boolean;
  /** customers.csv, transformers.csv, truth.jsonl, ledger.csv, scenario.json, summary.json (and dr.jsonl with demand response) go here. */
  outDir?: string;
  /** Give up when the broker does not accept the connection within this (default 10 s). */
  connectTimeoutMs?: number;
  /** QoS 1 publishes awaiting PUBACK at most (default 1000). */
  maxInFlight?: number;
  /** Answer on-demand reads on meters/+/commands while running (default true). */
  respond?: boolean;
  /** Reference time for relative `from`/`to` (`now`, `-1d`); default the wall clock. */
  now?: number;
  progressMs?: number;
  onProgress?: (p: SimProgress) => void;
  /** Called with the fleet and its plan before the first publish (e.g. to load the registry into Redis). */
  onFleet?: (fleet: Fleet, plan: Plan) => Promise<void> | void;
  signal?: AbortSignal;
}

export class SimulationError extends Error {
  override name = 'SimulationError';
}

/** Bounded QoS 1 publishing: at most `max` messages wait for their PUBACK. */
class Publisher {
  private inFlight = 0;
  private wake: (() => void) | undefined;
  failed = 0;
  firstError: Error | undefined;

  constructor(
    private readonly client: MqttClient,
    private readonly max: number,
  ) {}

  get full(): boolean {
    return this.inFlight >= this.max;
  }

  /** Resolves when a slot in the window is free. */
  async slot(): Promise<void> {
    while (this.inFlight >= this.max) await new Promise<void>((r) => (this.wake = r));
  }

  /** Hands the message to the client; call only when not `full` (no promise per message on the hot path). */
  send(m: SimMessage): void {
    this.inFlight++;
    this.client.publish(m.topic, m.payload, { qos: 1 }, (err) => {
      this.inFlight--;
      if (err) {
        this.failed++;
        this.firstError ??= err;
      }
      const w = this.wake;
      this.wake = undefined;
      w?.();
    });
  }

  get pending(): number {
    return this.inFlight;
  }

  /**
   * Waits until every publish is acknowledged. Once `signal` aborts, waits at most `graceMs` more
   * (a broker that went away must not hold the shutdown forever). Returns whether everything was acknowledged.
   */
  async drain(signal: AbortSignal | undefined, graceMs: number): Promise<boolean> {
    let deadline = Number.POSITIVE_INFINITY;
    while (this.inFlight > 0) {
      if (signal?.aborted && deadline === Number.POSITIVE_INFINITY) deadline = Date.now() + graceMs;
      if (Date.now() >= deadline) return false;
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 100).unref();
      });
    }
    return true;
  }
}

function writeInputs(dir: string, scenario: ResolvedScenario, sim: Simulation): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'customers.csv'), customersCsv(sim.fleet.customers));
  writeFileSync(join(dir, 'transformers.csv'), transformersCsv(sim.fleet.transformers));
  writeFileSync(join(dir, 'truth.jsonl'), truthJsonl(sim.plan.truth));
  writeFileSync(join(dir, 'scenario.json'), `${JSON.stringify({ ...scenario, from: isoSeconds(scenario.fromMs), to: isoSeconds(scenario.toMs) }, null, 2)}\n`);
}

/**
 * Runs a simulated fleet: writes the registry CSVs and the ground truth, then publishes every message over
 * MQTT (QoS 1, bounded in flight) in backfill or live mode, writing the ledger as it goes, and answers
 * on-demand reads meanwhile. Resolves with a summary when the last message is acknowledged or `signal` aborts.
 */
export async function runSimulation(opts: RunSimulationOptions): Promise<SimSummary> {
  const scenario = typeof opts.scenario === 'object' ? opts.scenario : loadScenario(opts.scenario, opts, { now: opts.now ?? Date.now() });
  const fleet = generateFleet(scenario);
  if (opts.outDir !== undefined) mkdirSync(opts.outDir, { recursive: true });
  const ledger = opts.outDir === undefined ? undefined : new LedgerWriter(join(opts.outDir, 'ledger.csv'));
  const sim = new Simulation(fleet, scenario, {
    batch: typeof opts.scenario === 'object' ? opts.batch : undefined,
    onLedger: ledger ? (r) => ledger.write(r) : undefined,
  });
  if (opts.outDir !== undefined) writeInputs(opts.outDir, sim.scenario, sim);
  await opts.onFleet?.(fleet, sim.plan);

  const speed = opts.backfill === true ? undefined : (opts.speed ?? scenario.speed);
  const mode = opts.dryRun ? 'dry-run' : speed === undefined ? 'backfill' : 'live';
  if (speed !== undefined && !(speed > 0)) throw new SimulationError(`speed must be above 0, got ${speed}`);
  if (mode !== 'dry-run' && !opts.mqttUrl) throw new SimulationError('mqttUrl is required unless dryRun is set');

  let client: MqttClient | undefined;
  let responder: ReadResponder | undefined;
  if (mode !== 'dry-run' && opts.mqttUrl) {
    client = await connectMqtt(
      { url: opts.mqttUrl, username: opts.mqttUsername, password: opts.mqttPassword, tls: opts.mqttTls, clientId: opts.clientId ?? 'meterflow-simulator' },
      { clientId: opts.clientId ?? `meterflow-sim-${process.pid}-${Date.now().toString(36)}`, clean: true },
      opts.connectTimeoutMs,
    );
    // Reconnects are MQTT.js's job; an 'error' without a listener would crash the process.
    client.on('error', () => undefined);
    if (opts.respond !== false) responder = await startReadResponder(client, (id) => sim.readAnswer(id));
  }
  const publisher = client ? new Publisher(client, Math.max(1, opts.maxInFlight ?? 1000)) : undefined;

  const hash = createHash('sha256');
  const p: SimProgress = {
    messages: 0,
    readings: 0,
    duplicates: 0,
    events: 0,
    malformed: 0,
    rejects: 0,
    bytes: 0,
    simTime: scenario.fromMs,
    elapsedMs: 0,
    readingsPerSec: 0,
    done: false,
  };
  const started = performance.now();
  const wallStart = Date.now();
  const RATE_WINDOW_MS = 5000;
  const samples: Array<{ at: number; readings: number }> = [{ at: started, readings: 0 }];
  const report = (done: boolean) => {
    const now = performance.now();
    p.elapsedMs = Math.round(now - started);
    samples.push({ at: now, readings: p.readings });
    while (samples.length > 2 && (samples[1]?.at ?? now) <= now - RATE_WINDOW_MS) samples.shift();
    const oldest = samples[0] ?? { at: started, readings: 0 };
    p.readingsPerSec = now > oldest.at ? Math.round(((p.readings - oldest.readings) * 1000) / (now - oldest.at)) : 0;
    p.done = done;
    opts.onProgress?.({ ...p });
  };
  const timer = opts.onProgress ? setInterval(() => report(false), opts.progressMs ?? 500) : undefined;

  // Live from `liveFrom` on (the scenario's start unless it sets one): the part before it goes out as a backfill.
  const paceFrom = scenario.liveFromMs ?? scenario.fromMs;
  let paceWallStart = paceFrom === scenario.fromMs ? wallStart : undefined;
  let aborted = false;
  let drained = false;
  try {
    for (const m of sim.messages()) {
      if (opts.signal?.aborted) {
        aborted = true;
        break;
      }
      if (mode === 'live' && speed !== undefined && m.at >= paceFrom) {
        paceWallStart ??= Date.now();
        // Simulated time runs at speed x real time, but a message is never sent before its own time.
        const due = Math.max(paceWallStart + (m.at - paceFrom) / speed, m.at);
        const wait = due - Date.now();
        if (wait > 0) {
          try {
            await sleep(wait, undefined, { signal: opts.signal });
          } catch {
            aborted = true;
            break;
          }
        }
      }
      hash.update(`${m.topic}\n${m.payload}\n`);
      p.messages++;
      p.bytes += m.payload.length;
      p.simTime = m.at;
      p.rejects += m.rejects;
      if (m.kind === 'duplicate') p.duplicates += m.readings;
      else if (m.kind === 'event') p.events++;
      else if (m.kind === 'malformed') p.malformed++;
      else p.readings += m.readings;
      if (publisher) {
        if (publisher.full) await publisher.slot();
        publisher.send(m);
      } else if (p.messages % 4096 === 0) await new Promise<void>((r) => setImmediate(r)); // let progress timers run
    }
    drained = (await publisher?.drain(opts.signal, 5000)) ?? true;
    if (publisher && publisher.failed > 0) {
      throw new SimulationError(`${publisher.failed} publishes failed: ${publisher.firstError?.message ?? 'unknown error'}`, { cause: publisher.firstError });
    }
  } finally {
    if (timer) clearInterval(timer);
    ledger?.close();
    await responder?.close();
    // Graceful close once everything is acknowledged; forced when the broker stopped answering.
    if (client) await client.endAsync(!drained);
  }
  report(true);

  const elapsed = Math.max(1, performance.now() - started);
  const summary: SimSummary = {
    ...p,
    mode,
    scenario: scenario.name,
    seed: scenario.seed,
    from: isoSeconds(scenario.fromMs),
    to: isoSeconds(scenario.toMs),
    meters: fleet.meters.length,
    transformers: fleet.transformers.length,
    batch: sim.scenario.batch,
    sha256: hash.digest('hex'),
    truthRecords: sim.plan.truth.length,
    ledgerRows: ledger?.rows ?? 0,
    answeredReads: responder?.answered ?? 0,
    averageReadingsPerSec: Math.round((p.readings * 1000) / elapsed),
    unacknowledged: publisher?.pending ?? 0,
    aborted,
    ...(opts.outDir === undefined ? {} : { outDir: opts.outDir }),
  };
  if (opts.outDir !== undefined) {
    // The demand-response truth needs the run: the counterfactual energies are booked as the engine steps through.
    if (sim.plan.dr.length > 0) writeFileSync(join(opts.outDir, 'dr.jsonl'), drJsonl(sim.drTruth()));
    writeFileSync(join(opts.outDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  }
  return summary;
}
