import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { createLogger } from '../../src/shared/logger.js';
import { keys } from '../../src/shared/redis.js';
import { exited, serviceEnv, spawnRole } from '../helpers/pipeline.js';
import { startInflux, startMosquitto, startTestRedis, type LocalService } from '../helpers/services.js';

/**
 * The fault suite's rig: private Redis (AOF, fsync always), Mosquitto (persistent) and influxd; the ingest and the
 * stream worker in their own processes, as deployed; and a steady flow of meter readings whose publisher keeps a
 * ledger of every reading the broker acknowledged. After a fault, `diff()` compares the ledger with what the
 * pipeline kept: every acknowledged reading in `reading` exactly once with its register, and per meter the
 * `interval` energy summing to the register delta to the watt-hour.
 */

export const SHARDS = 4;
const INTERVAL_MS = 900_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export type RoleName = 'ingest' | 'stream';

export interface LedgerDiff {
  /** Acknowledged readings missing from `reading` (meter@ts). */
  missing: string[];
  /** Readings whose stored register differs from the acknowledged one. */
  wrong: string[];
  /** Meters whose interval energy differs from their register delta. */
  intervals: Array<{ meter: string; intervalWh: number; registerDeltaWh: number }>;
  acknowledged: number;
  stored: number;
}

/** Readings of `meters` meters, one interval per step, published at QoS 1 with a ledger of the acknowledged ones. */
export class Flow {
  readonly ledger = new Map<string, number>();
  private readonly registers: number[];
  private step = 0;
  private inFlight = 0;
  private running: Promise<void> | undefined;
  private stopping = false;
  published = 0;

  constructor(
    private readonly client: MqttClient,
    readonly meters: number,
    readonly t0: number,
    private readonly stepMs: number,
  ) {
    this.registers = Array.from({ length: meters }, (_, m) => 1_000_000 + m * 1000);
  }

  static meterId(m: number): string {
    return `F-${String(m).padStart(4, '0')}`;
  }

  start(): void {
    this.running = (async () => {
      while (!this.stopping) {
        this.publishStep();
        await sleep(this.stepMs);
      }
    })();
  }

  /** One interval for every meter; consumption varies by meter and time, deterministic. */
  publishStep(): void {
    const ts = this.t0 + this.step * INTERVAL_MS;
    for (let m = 0; m < this.meters; m++) {
      const wh = 50 + ((this.step * 37 + m * 101) % 400);
      const importWh = (this.registers[m] ?? 0) + wh;
      this.registers[m] = importWh;
      const meterId = Flow.meterId(m);
      this.inFlight++;
      this.published++;
      this.client.publish(`meters/${meterId}/readings`, JSON.stringify({ meterId, ts, importWh, exportWh: 0, voltageV: 230 }), { qos: 1 }, (err) => {
        this.inFlight--;
        if (!err) this.ledger.set(`${meterId}@${ts}`, importWh);
      });
    }
    this.step++;
  }

  /** Stops publishing and waits until every publish is acknowledged (MQTT.js resends across reconnects). */
  async stop(timeoutMs = 120_000): Promise<void> {
    this.stopping = true;
    await this.running;
    const deadline = Date.now() + timeoutMs;
    while (this.inFlight > 0 && Date.now() < deadline) await sleep(50);
    if (this.inFlight > 0) throw new Error(`${this.inFlight} publishes never acknowledged`);
  }
}

export class FaultRig {
  readonly roles = new Map<RoleName, ChildProcess & { output: () => string }>();
  readonly redisClient: Redis;
  private pub: MqttClient | undefined;
  flow: Flow | undefined;

  private constructor(
    readonly redis: LocalService,
    readonly mqtt: LocalService,
    readonly influxSvc: LocalService,
    readonly influx: Influx,
    readonly env: Record<string, string>,
  ) {
    this.redisClient = new Redis(redis.url, { maxRetriesPerRequest: null, retryStrategy: () => 200 });
    this.redisClient.on('error', () => undefined); // Redis is stopped on purpose in some cases
  }

  static async start(extraEnv: Record<string, string> = {}): Promise<FaultRig> {
    const [redis, mqttSvc, influxSvc] = await Promise.all([startTestRedis({ persist: true }), startMosquitto(), startInflux()]);
    const env = serviceEnv({ redis, mqtt: mqttSvc, influx: influxSvc }, { STREAM_SHARDS: String(SHARDS), LOG_LEVEL: 'warn', ...extraEnv });
    const influx = await createInflux({ url: influxSvc.url, bucket: 'meterflow' }, createLogger({ level: 'silent' }));
    return new FaultRig(redis, mqttSvc, influxSvc, influx, env);
  }

  async startRole(role: RoleName): Promise<void> {
    const child = spawnRole(role, { ...this.env, MF_INSTANCE: `fault-${role}`, MQTT_CLIENT_ID: 'fault' });
    this.roles.set(role, child);
    const name = role === 'ingest' ? 'meterflow-ingest' : 'meterflow-stream';
    const deadline = Date.now() + 60_000;
    while (!String(await this.redisClient.client('LIST')).includes(`name=${name}`)) {
      if (child.exitCode !== null) throw new Error(`${role} exited: ${child.output()}`);
      if (Date.now() > deadline) throw new Error(`${role} did not start: ${child.output()}`);
      await sleep(100);
    }
    if (role === 'ingest') await sleep(500); // subscribed
  }

  async signal(role: RoleName, sig: NodeJS.Signals): Promise<number | null> {
    const child = this.roles.get(role);
    if (child === undefined) return null;
    child.kill(sig);
    if (sig === 'SIGSTOP' || sig === 'SIGCONT') return null;
    await exited(child);
    this.roles.delete(role);
    return child.exitCode;
  }

  /** Resident memory of a role's process, MiB (Linux). */
  rssMiB(role: RoleName): number {
    const pid = this.roles.get(role)?.pid;
    if (pid === undefined) return 0;
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  }

  /**
   * Starts the steady flow: `meters` meters, one interval each every `stepMs`, from `daysBack` days ago (event time
   * must stay in the past for as long as the case runs: a reading from the future is rejected, rightly).
   */
  async startFlow(meters = 40, stepMs = 100, daysBack = 20): Promise<Flow> {
    this.pub = await mqtt.connectAsync(this.mqtt.url, { clientId: 'fault-publisher', clean: false, reconnectPeriod: 200, protocolVersion: 4 });
    const t0 = Math.floor(Date.now() / INTERVAL_MS) * INTERVAL_MS - daysBack * 86_400_000;
    this.flow = new Flow(this.pub, meters, t0, stepMs);
    this.flow.start();
    return this.flow;
  }

  /** What the pipeline kept, compared with the ledger. */
  async diff(): Promise<LedgerDiff> {
    const flow = this.flow;
    if (flow === undefined) throw new Error('no flow');
    const stored = new Map<string, number>();
    for (const s of await this.influx.query('SELECT import_wh FROM reading GROUP BY meter')) {
      for (const [t, v] of s.values) stored.set(`${s.tags.meter}@${String(t)}`, Number(v));
    }
    const missing: string[] = [];
    const wrong: string[] = [];
    const range = new Map<string, { min: number; max: number }>();
    for (const [key, wh] of flow.ledger) {
      const got = stored.get(key);
      if (got === undefined) missing.push(key);
      else if (got !== wh) wrong.push(`${key}: ${got} != ${wh}`);
      const meter = key.split('@')[0] ?? '';
      const r = range.get(meter) ?? { min: Infinity, max: -Infinity };
      range.set(meter, { min: Math.min(r.min, wh), max: Math.max(r.max, wh) });
    }
    const sums = new Map<string, number>();
    for (const s of await this.influx.query('SELECT sum(wh) FROM interval GROUP BY meter')) sums.set(s.tags.meter ?? '', Number(s.values[0]?.[1] ?? 0));
    const intervals: LedgerDiff['intervals'] = [];
    for (const [meter, r] of range) {
      const intervalWh = sums.get(meter) ?? 0;
      if (intervalWh !== r.max - r.min) intervals.push({ meter, intervalWh, registerDeltaWh: r.max - r.min });
    }
    return { missing, wrong, intervals, acknowledged: flow.ledger.size, stored: stored.size };
  }

  /** The ingest and the stream worker running, and the steady flow started. */
  async startPipeline(meters = 40, stepMs = 100, daysBack = 20): Promise<Flow> {
    await this.startRole('stream');
    await this.startRole('ingest');
    return this.startFlow(meters, stepMs, daysBack);
  }

  /** Stops the flow (every publish acknowledged) and settles: the diff, and a message for an assertion. */
  async finish(timeoutMs = 180_000): Promise<{ diff: LedgerDiff; lost: number; text: string }> {
    await this.flow?.stop(timeoutMs);
    const diff = await this.settle(timeoutMs);
    return { diff, lost: diff.missing.length + diff.wrong.length + diff.intervals.length, text: `${describeDiff(diff)}\n${this.output()}` };
  }

  /** Waits until the pipeline has caught up with the ledger (or the deadline), and returns the diff then. */
  async settle(timeoutMs = 180_000): Promise<LedgerDiff> {
    const deadline = Date.now() + timeoutMs;
    let d = await this.diff();
    while (Date.now() < deadline && (d.missing.length > 0 || d.wrong.length > 0 || d.intervals.length > 0)) {
      await sleep(1000);
      d = await this.diff();
    }
    return d;
  }

  async deadLetters(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const [, f] of await this.redisClient.xrange(keys.dlq, '-', '+')) {
      const reason = f[f.indexOf('reason') + 1] ?? '';
      out[reason] = (out[reason] ?? 0) + 1;
    }
    return out;
  }

  output(): string {
    return [...this.roles].map(([r, c]) => `--- ${r}\n${c.output().slice(-4000)}`).join('\n');
  }

  async close(): Promise<void> {
    for (const [role] of this.roles) await this.signal(role, 'SIGKILL').catch(() => undefined);
    await this.pub?.endAsync(true).catch(() => undefined);
    this.redisClient.disconnect();
    await Promise.all([this.redis.destroy(), this.mqtt.destroy(), this.influxSvc.destroy()]);
  }
}

/** A short, readable summary of a diff for assertion messages. */
export function describeDiff(d: LedgerDiff): string {
  return `acknowledged ${d.acknowledged}, stored ${d.stored}; missing ${d.missing.length} ${d.missing.slice(0, 10).join(' ')}; wrong ${d.wrong.length} ${d.wrong.slice(0, 5).join(' ')}; interval sums off ${JSON.stringify(d.intervals.slice(0, 5))}`;
}
