import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { MqttClient } from 'mqtt';
import type { Reading } from '../src/contracts/reading.js';
import type { CustomerClass, CustomerRecord, TransformerRecord } from '../src/contracts/registry.js';
import { roleEnv as serviceRoleEnv } from '../simulators/services.js';

export const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
export const REPO = fileURLToPath(new URL('../', import.meta.url));

export interface BenchRow {
  case: string;
  [k: string]: string | number;
}

/** Prints an aligned table (no file). */
export function table(rows: BenchRow[]): string {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const fmt = (v: string | number | undefined): string => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : (v ?? ''));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => fmt(r[c]).length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ');
  return [line(cols), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(cols.map((c) => fmt(r[c]))))].join('\n');
}

/** Prints an aligned table and writes the rows (plus context) as JSON under bench/results. */
export function report(name: string, rows: BenchRow[], context: Record<string, unknown> = {}): string {
  process.stdout.write(`\n${name}\n${table(rows)}\n`);
  return writeResult(name, { name, at: new Date().toISOString(), context, rows });
}

/** Writes bench/results/<name>-<timestamp>.json (or <timestamp>.json when name is empty); returns the path. */
export function writeResult(name: string, body: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = `${RESULTS_DIR}${name ? `${name}-` : ''}${stamp}.json`;
  writeFileSync(file, `${JSON.stringify(body, null, 2)}\n`);
  process.stdout.write(`written ${file}\n`);
  return file;
}

/** A single updating progress line on stderr. */
export function progress(msg: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${msg}`);
  else if (msg !== '') process.stderr.write(`${msg}\n`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const fmtInt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : String(n));
export const fmtDuration = (s: number): string => {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m} min ${Math.round(s - m * 60)} s` : `${s.toFixed(1)} s`;
};

// --- machine context ------------------------------------------------------------------------------------------

export interface MachineContext {
  cores: number;
  cpu: string;
  memGiB: number;
  node: string;
  platform: string;
  gitCommit: string | null;
  /** Uncommitted changes in the working tree when the bench ran (the figures then describe those, not the commit). */
  gitDirty: string[];
}

export function machineContext(): MachineContext {
  const git = (args: string[]): string | null => {
    const r = spawnSync('git', args, { cwd: REPO, encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
  };
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    gitCommit: git(['rev-parse', 'HEAD']),
    gitDirty: (git(['status', '--porcelain', '--untracked-files=no']) ?? '')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.trim()),
  };
}

// --- roles in their own processes ----------------------------------------------------------------------------

export interface ServiceSet {
  redis: { url: string };
  mqtt: { url: string };
  influx?: { url: string };
}

/** Environment for a role talking to the bench's private services: 16 stream shards, instance `bench`. */
export function roleEnv(s: ServiceSet, extra: Record<string, string> = {}): Record<string, string> {
  return serviceRoleEnv(s, { STREAM_SHARDS: '16', MF_INSTANCE: 'bench', ...extra });
}

export interface RoleProcess {
  readonly role: string;
  readonly child: ChildProcess;
  /** The last 20 kB the process wrote (stdout + stderr). */
  output(): string;
  /** Resolves once the role logged that it started (needs LOG_LEVEL info or lower), rejects if it exits first. */
  ready(timeoutMs?: number): Promise<void>;
  /** Resident and peak resident set (KiB) from /proc, undefined off Linux or once exited. */
  memory(): { rssKiB: number; hwmKiB: number } | undefined;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once exited. */
  stop(graceMs?: number): Promise<void>;
}

const liveRoles = new Set<ChildProcess>();
let roleExitHook = false;

export function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

/** `node bin/meterflow.js <role>` with exactly `env` (plus PATH and HOME). */
export function spawnRole(role: string, env: Record<string, string>): RoleProcess {
  let out = '';
  let seenReady = false;
  const child = spawn(process.execPath, ['bin/meterflow.js', role], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveRoles.add(child);
  child.once('exit', () => liveRoles.delete(child));
  if (!roleExitHook) {
    roleExitHook = true;
    process.once('exit', () => {
      for (const c of liveRoles) c.kill('SIGKILL');
    });
  }
  // Every role logs "<role> started" / "stream worker started" / "api listening" at info once it is up.
  const readyRe = /"msg":"[^"]*(started|listening)"/;
  const keep = (b: Buffer): void => {
    const s = b.toString();
    if (!seenReady && readyRe.test(s)) seenReady = true;
    out = (out + s).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return {
    role,
    child,
    output: () => out,
    async ready(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (!seenReady) {
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`role ${role} exited (${child.exitCode ?? child.signalCode}) before it started:\n${out.slice(-3000)}`);
        if (Date.now() > deadline) throw new Error(`role ${role} did not start within ${timeoutMs} ms:\n${out.slice(-3000)}`);
        await sleep(50);
      }
    },
    memory() {
      if (child.pid === undefined || child.exitCode !== null) return undefined;
      try {
        const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
        const kib = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
        return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
      } catch {
        return undefined;
      }
    },
    async stop(graceMs = 20_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited(child);
      clearTimeout(timer);
    },
  };
}

/** Runs a bench script (`bench/<name>`) in its own process, echoing its output; returns its exit code, output and the JSON it wrote. */
export async function runBenchChild(
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<{ status: number | null; output: string; resultFile: string | undefined }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL(`./${script}`, import.meta.url)), ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (b: Buffer) => {
    output += b.toString();
    process.stdout.write(b);
  });
  child.stderr?.on('data', (b: Buffer) => process.stderr.write(b));
  const status = await new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const files = [...output.matchAll(/written (\S+\.json)/g)].map((m) => m[1]);
  return { status, output, resultFile: files.at(-1) };
}

// --- publishing -------------------------------------------------------------------------------------------------

/** One MQTT message of the bench: its readings count and the event time (ts) of its readings. */
export interface Msg {
  topic: string;
  payload: string;
  readings: number;
  ts: number;
  /** Readings of this message whose publish time is to be recorded (latency probes). */
  probes?: Array<{ meterId: string; ts: number }>;
}

export interface PublishOptions {
  /** QoS 1 publishes in flight (sent, PUBACK not yet received). */
  window: number;
  /** Flow control: awaited before a message is sent when it returns a promise. */
  gate?: (m: Msg) => Promise<void> | undefined;
  /** Paced: message k is not sent before start + k × everyMs. */
  everyMs?: number;
  /** Called as each message is handed to the client (Date.now()). */
  onSend?: (m: Msg, atMs: number) => void;
  /** Stop early (checked before each message). */
  stop?: () => boolean;
}

export interface PublishResult {
  messages: number;
  readings: number;
  /** performance.now() of the first send and of the last PUBACK. */
  firstSendAt: number;
  lastAckAt: number;
}

/** QoS 1 publishing with a window of in-flight publishes (the publisher waits for PUBACKs, like a real gateway). */
export async function publishAll(client: MqttClient, msgs: Iterable<Msg>, o: PublishOptions): Promise<PublishResult> {
  let inFlight = 0;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const res: PublishResult = { messages: 0, readings: 0, firstSendAt: 0, lastAckAt: 0 };
  const acked = (err?: Error): void => {
    inFlight--;
    res.lastAckAt = performance.now();
    if (err && failure === undefined) failure = err;
    const w = wake;
    wake = undefined;
    w?.();
  };
  let k = 0;
  let t0 = 0;
  for (const m of msgs) {
    if (o.stop?.()) break;
    const g = o.gate?.(m);
    if (g !== undefined) await g;
    if (k === 0) t0 = performance.now();
    if (o.everyMs !== undefined) {
      const wait = t0 + k * o.everyMs - performance.now();
      if (wait > 0.5) await sleep(wait);
    }
    while (inFlight >= o.window) await new Promise<void>((r) => (wake = r));
    if (failure !== undefined) throw failure;
    if (k === 0) res.firstSendAt = performance.now();
    inFlight++;
    k++;
    o.onSend?.(m, Date.now());
    client.publish(m.topic, m.payload, { qos: 1 }, acked);
    res.messages++;
    res.readings += m.readings;
  }
  while (inFlight > 0) await new Promise<void>((r) => (wake = r));
  if (failure !== undefined) throw failure;
  return res;
}

// --- a fleet of meters with realistic-ish consumption -------------------------------------------------------------

export const QUARTER_MS = 15 * 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** Mean Wh per hour by hour of day (UTC here: MF_TIMEZONE defaults to UTC), weekday and weekend. */
const PROFILES: Record<'residential' | 'commercial' | 'industrial', { weekday: number[]; weekend: number[] }> = {
  residential: {
    weekday: [260, 220, 200, 200, 210, 270, 460, 780, 690, 460, 390, 380, 420, 400, 380, 410, 530, 820, 1180, 1240, 1100, 900, 620, 360],
    weekend: [310, 250, 220, 210, 210, 230, 300, 460, 690, 790, 740, 700, 700, 650, 600, 610, 700, 900, 1190, 1240, 1100, 950, 700, 410],
  },
  commercial: {
    weekday: [2000, 2000, 2000, 2000, 2000, 2200, 3000, 5500, 8000, 8500, 8500, 8500, 8000, 8500, 8500, 8500, 8000, 7000, 4500, 3000, 2500, 2200, 2000, 2000],
    weekend: [2000, 2000, 2000, 2000, 2000, 2000, 2000, 2200, 2500, 2800, 3000, 3000, 3000, 3000, 3000, 2800, 2500, 2200, 2100, 2000, 2000, 2000, 2000, 2000],
  },
  industrial: {
    weekday: [
      30000, 30000, 30000, 30000, 30000, 35000, 80000, 85000, 85000, 85000, 85000, 85000, 80000, 85000, 85000, 85000, 85000, 85000, 85000, 85000, 85000, 80000,
      40000, 30000,
    ],
    weekend: [
      30000, 30000, 30000, 30000, 30000, 30000, 40000, 40000, 40000, 40000, 40000, 40000, 40000, 40000, 40000, 40000, 40000, 40000, 40000, 40000, 40000, 35000,
      30000, 30000,
    ],
  },
};
const CLASS_CODES: Array<'residential' | 'commercial' | 'industrial'> = ['residential', 'commercial', 'industrial'];

/** mulberry32: small, fast, deterministic. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FleetOptions {
  meters: number;
  /** Meter id prefix (meters are `<prefix>-000001` …). */
  prefix?: string;
  seed?: number;
  /** Meters per concentrator (its batch size). */
  perConcentrator?: number;
}

/**
 * M meters with integer cumulative Wh registers read every 15 min on the boundary: a class profile by hour of day
 * (weekday / weekend), a per-meter size (log-normal), a per-meter day factor (log-normal, σ 0.12), noise per interval
 * (log-normal, σ 0.3); 88 % residential, 10 % commercial, 2 % industrial; 5 % of the homes with PV (export around
 * noon). Voltage 230 V ± 2 V. Meters are grouped by `perConcentrator` consecutive meters behind one concentrator,
 * 50 per transformer, 10 transformers per feeder. Generation is lazy and in event-time order; registers only advance.
 */
export class Fleet {
  readonly ids: string[];
  readonly concentrators: string[];
  readonly perConcentrator: number;
  private readonly cls: Uint8Array;
  private readonly pv: Uint8Array;
  private readonly size: Float64Array;
  private readonly imp: Float64Array;
  private readonly exp: Float64Array;
  private readonly dayNo: Int32Array;
  private readonly dayFactor: Float64Array;
  private readonly rand: () => number;
  private spare: number | undefined;
  /** Event time of the newest reading generated per meter (registers are kept for it). */
  private readonly lastTs: Float64Array;

  constructor(readonly o: FleetOptions) {
    const n = o.meters;
    const prefix = o.prefix ?? 'B';
    this.perConcentrator = o.perConcentrator ?? 100;
    this.rand = rng(o.seed ?? 20261206);
    this.ids = Array.from({ length: n }, (_, i) => `${prefix}-${String(i + 1).padStart(6, '0')}`);
    this.concentrators = Array.from({ length: Math.ceil(n / this.perConcentrator) }, (_, c) => `${prefix}C-${String(c + 1).padStart(5, '0')}`);
    this.cls = new Uint8Array(n);
    this.pv = new Uint8Array(n);
    this.size = new Float64Array(n);
    this.imp = new Float64Array(n);
    this.exp = new Float64Array(n);
    this.dayNo = new Int32Array(n).fill(-1);
    this.dayFactor = new Float64Array(n);
    this.lastTs = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const u = this.rand();
      this.cls[i] = u < 0.88 ? 0 : u < 0.98 ? 1 : 2;
      this.pv[i] = this.cls[i] === 0 && this.rand() < 0.05 ? 1 : 0;
      this.size[i] = Math.exp(0.45 * this.normal());
      this.imp[i] = Math.floor(1_000_000 + this.rand() * 40_000_000);
    }
  }

  get meters(): number {
    return this.ids.length;
  }

  private normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.rand();
    const v = this.rand();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  classOf(i: number): CustomerClass {
    return CLASS_CODES[this.cls[i] ?? 0] ?? 'residential';
  }

  transformerOf(i: number): string {
    return `${this.o.prefix ?? 'B'}T-${String(Math.floor(i / 50) + 1).padStart(5, '0')}`;
  }

  /** Registry rows: customers (one per meter) and transformers (rated at 2.5× their meters' summed peak). */
  registry(): { customers: CustomerRecord[]; transformers: TransformerRecord[] } {
    const customers: CustomerRecord[] = [];
    const peakKw = new Map<string, number>();
    for (let i = 0; i < this.meters; i++) {
      const c = this.classOf(i);
      const profile = PROFILES[c === 'critical' ? 'commercial' : c];
      const peak = (Math.max(...profile.weekday) * (this.size[i] ?? 1)) / 1000;
      const t = this.transformerOf(i);
      peakKw.set(t, (peakKw.get(t) ?? 0) + peak);
      customers.push({
        meterId: this.ids[i] ?? '',
        customerId: `CU-${this.ids[i] ?? ''}`,
        class: c,
        tariff: 'default',
        // Contracted power well above the meter's own peak (noise included): customerPeak stays quiet.
        contractKw: Math.ceil(peak * 3 + 3),
        feederId: `${this.o.prefix ?? 'B'}F-${String(Math.floor(i / 500) + 1).padStart(4, '0')}`,
        transformerId: t,
        hasPv: this.pv[i] === 1,
        intervalMinutes: 15,
      });
    }
    const transformers: TransformerRecord[] = [...peakKw].map(([transformerId, kw], k) => ({
      transformerId,
      feederId: `${this.o.prefix ?? 'B'}F-${String(Math.floor((k * 50) / 500) + 1).padStart(4, '0')}`,
      ratingKva: Math.ceil(kw * 2.5 + 10),
    }));
    return { customers, transformers };
  }

  /**
   * Meter i's reading at `ts` (end of the interval (ts − 15 min, ts]): advances its registers by that interval's
   * energy. `resetTo` (a register reset, e.g. a replaced meter): the import register restarts from 0 at the start
   * of the interval, so the read is lower than the previous one.
   */
  reading(i: number, ts: number, resetTo = false): Reading {
    const c = this.cls[i] ?? 0;
    const start = ts - QUARTER_MS;
    const day = Math.floor(start / DAY_MS);
    if (this.dayNo[i] !== day) {
      this.dayNo[i] = day;
      this.dayFactor[i] = Math.exp(0.12 * this.normal() - 0.0072);
    }
    const hour = Math.floor((start % DAY_MS) / HOUR_MS);
    const weekday = (day + 4) % 7; // 0 = Sunday (1970-01-01 was a Thursday)
    const profile = PROFILES[CLASS_CODES[c] ?? 'residential'];
    const rate = (weekday === 0 || weekday === 6 ? profile.weekend : profile.weekday)[hour] ?? 0;
    let load = (rate / 4) * (this.size[i] ?? 1) * (this.dayFactor[i] ?? 1) * Math.exp(0.3 * this.normal() - 0.045);
    let exported = 0;
    if (this.pv[i] === 1 && hour >= 7 && hour < 19) {
      const sun = Math.sin(((hour + 0.5 - 7) / 12) * Math.PI);
      const gen = 900 * (this.size[i] ?? 1) * sun * (0.6 + 0.4 * this.rand());
      exported = Math.max(0, gen - load);
      load = Math.max(0, load - gen);
    }
    if (resetTo) this.imp[i] = 0;
    this.imp[i] = (this.imp[i] ?? 0) + load;
    this.exp[i] = (this.exp[i] ?? 0) + exported;
    this.lastTs[i] = ts;
    const r: Reading = { meterId: this.ids[i] ?? '', ts, importWh: Math.floor(this.imp[i] ?? 0), exportWh: Math.floor(this.exp[i] ?? 0) };
    r.powerW = Math.round(load * 4);
    r.voltageV = Math.round((230 + 2 * this.normal()) * 10) / 10;
    return r;
  }
}

/** A reading as a meter sends it: ts as ISO-8601 UTC. Hand-built (the bench's own JSON cost stays small). */
export function readingJson(r: Reading, iso: string): string {
  return `{"meterId":"${r.meterId}","ts":"${iso}","importWh":${r.importWh},"exportWh":${r.exportWh ?? 0},"powerW":${r.powerW ?? 0},"voltageV":${r.voltageV ?? 230}}`;
}

export interface MessageOptions {
  /** 'batched': one message per concentrator and quarter on concentrators/{id}/readings; 'single': one per meter on meters/{id}/readings. */
  mode: 'batched' | 'single';
  /** First and last (inclusive) reading timestamps, on the quarter. */
  from: number;
  to: number;
  /** Meter index to reset in a given message (latency probes), by message index within the run. */
  probe?: (msgIndex: number, meters: readonly number[]) => number | undefined;
  /** Also hand each reading to this (e.g. raw XADD / InfluxDB lines built from the same data). */
  onReading?: (r: Reading) => void;
}

/** The fleet's messages, quarter by quarter, generated lazily. */
export function* fleetMessages(fleet: Fleet, o: MessageOptions): Generator<Msg> {
  let k = 0;
  const per = fleet.perConcentrator;
  for (let ts = o.from; ts <= o.to; ts += QUARTER_MS) {
    const iso = new Date(ts).toISOString();
    if (o.mode === 'single') {
      for (let i = 0; i < fleet.meters; i++) {
        const probe = o.probe?.(k, [i]);
        const r = fleet.reading(i, ts, probe === i);
        o.onReading?.(r);
        k++;
        const m: Msg = { topic: `meters/${r.meterId}/readings`, payload: readingJson(r, iso), readings: 1, ts };
        if (probe === i) m.probes = [{ meterId: r.meterId, ts }];
        yield m;
      }
      continue;
    }
    for (let c = 0; c < fleet.concentrators.length; c++) {
      const members: number[] = [];
      for (let i = c * per; i < Math.min(fleet.meters, (c + 1) * per); i++) members.push(i);
      const probe = o.probe?.(k, members);
      const parts: string[] = [];
      let probes: Msg['probes'];
      for (const i of members) {
        const r = fleet.reading(i, ts, probe === i);
        o.onReading?.(r);
        parts.push(readingJson(r, iso));
        if (probe === i) probes = [{ meterId: r.meterId, ts }];
      }
      k++;
      const m: Msg = { topic: `concentrators/${fleet.concentrators[c] ?? 'C'}/readings`, payload: `[${parts.join(',')}]`, readings: members.length, ts };
      if (probes) m.probes = probes;
      yield m;
    }
  }
}
