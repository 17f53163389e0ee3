import { backoffMs } from '../domain/backoff.js';
import { HttpError, InfluxDB, setLogger } from '@influxdata/influxdb-client';
import type { Logger } from './logger.js';
import type { AppConfig } from './config.js';
import { ServiceError } from './errors.js';

export interface InfluxSeries {
  name: string;
  tags: Record<string, string>;
  columns: string[];
  values: unknown[][];
}

export interface LineWriter {
  /** Buffers lines; flushed by size or time. Never drops: callers wait on `drained()` when `backlog` is high. */
  write(lines: string[]): void;
  readonly backlog: number;
  /** Resolves once the backlog is below the high-water mark. */
  drained(): Promise<void>;
  /**
   * Resolves once every line written before this call is in InfluxDB (or quarantined). Lines written meanwhile do not
   * hold it up, so a caller can keep writing while it waits.
   */
  flush(): Promise<void>;
  close(): Promise<void>;
  readonly stats: { written: number; failedBatches: number; retries: number; quarantined: number };
}

/** Points InfluxDB refused for good (a 4xx): the lines and its reason, for a dead letter. */
export type Quarantine = (lines: string[], reason: string) => Promise<void>;

export interface WriterOptions {
  batchSize?: number;
  flushMs?: number;
  /** Lines buffered before `drained()` makes callers wait. */
  highWater?: number;
  /** Batches in flight at once. */
  concurrency?: number;
  /**
   * Takes the lines InfluxDB rejects (400: a field type conflict, a point beyond the retention policy, …), isolated
   * by bisecting the batch, so one bad point never costs its neighbours and is never retried forever. Without it
   * they are only logged.
   */
  quarantine?: Quarantine;
}

export interface Influx {
  readonly api: 'v1' | 'v2';
  writer(opts?: WriterOptions): LineWriter;
  /** InfluxQL through /query (1.x, 2.x v1-compat, 3.x). Throws ServiceError when unreachable. */
  query(influxql: string, opts?: { db?: string }): Promise<InfluxSeries[]>;
  ensureDatabase(): Promise<void>;
  ping(): Promise<string>;
  close(): Promise<void>;
}

/** InfluxQL string literal. */
export const qstr = (s: string): string => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
/** InfluxQL identifier. */
export const qid = (s: string): string => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
/** InfluxQL regex literal matching exactly one of the values. */
export const qregexAny = (values: string[]): string => `/^(${values.map((v) => v.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|')})$/`;

let loggerRouted = false;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Only a refusal of the points themselves (400 bad or conflicting point, 413 too large, 422 unprocessable) is final;
 * everything else — 5xx, 429, timeouts, and 401/403/404 (credentials or bucket wrong: a deployment problem, not the
 * data's) — is retried, so no point is ever dropped for a reason an operator can fix.
 */
function retriable(err: unknown): boolean {
  if (err instanceof HttpError) return ![400, 413, 422].includes(err.statusCode);
  return true; // network errors, timeouts
}

export async function detectApi(client: InfluxDB): Promise<{ api: 'v1' | 'v2'; version: string }> {
  let version = '';
  await client.transport.request('/ping', '', { method: 'GET' }, (headers) => {
    const v = headers['x-influxdb-version'];
    version = Array.isArray(v) ? (v[0] ?? '') : (v ?? '');
  });
  return { api: version.startsWith('1.') ? 'v1' : 'v2', version };
}

/**
 * Buffers lines and posts them in batches, `concurrency` at a time, by size or after `flushMs`. Lines are numbered
 * as written, so `flush()` waits only for the lines written before it.
 */
class BatchWriter implements LineWriter {
  private readonly batchSize: number;
  private readonly flushMs: number;
  private readonly highWater: number;
  private readonly concurrency: number;
  private buffer: string[] = [];
  /** Lines buffered or in flight. */
  private queued = 0;
  private inFlight = 0;
  /** Lines written so far: buffer[0] is line number `accepted - buffer.length`. */
  private accepted = 0;
  /** First line number of each batch in flight. */
  private readonly flying = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly flushWaiters: Array<{ upTo: number; resolve: () => void }> = [];
  private readonly drainWaiters: Array<() => void> = [];
  readonly stats = { written: 0, failedBatches: 0, retries: 0, quarantined: 0 };

  constructor(
    private readonly post: (body: string) => Promise<void>,
    private readonly log: Logger,
    private readonly opts: WriterOptions,
    private readonly onClose: (w: LineWriter) => void,
  ) {
    this.batchSize = opts.batchSize ?? 5000;
    this.flushMs = opts.flushMs ?? 200;
    this.highWater = opts.highWater ?? 50_000;
    this.concurrency = opts.concurrency ?? 2;
  }

  write(lines: string[]): void {
    if (lines.length === 0) return;
    for (const l of lines) this.buffer.push(l);
    this.queued += lines.length;
    this.accepted += lines.length;
    if (this.buffer.length >= this.batchSize) this.pump();
    else this.schedule();
  }

  get backlog(): number {
    return this.queued;
  }

  drained(): Promise<void> {
    return this.queued < this.highWater ? Promise.resolve() : new Promise((r) => this.drainWaiters.push(r));
  }

  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.pump();
    const upTo = this.accepted;
    if (this.doneBelow() >= upTo) return;
    await new Promise<void>((resolve) => {
      this.flushWaiters.push({ upTo, resolve });
      this.pump();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
    this.onClose(this);
  }

  /** Every line numbered below this is done (in InfluxDB or quarantined). */
  private doneBelow(): number {
    let low = this.buffer.length > 0 ? this.accepted - this.buffer.length : this.accepted;
    for (const f of this.flying) low = Math.min(low, f);
    return low;
  }

  private notify(): void {
    if (this.queued < this.highWater) for (const w of this.drainWaiters.splice(0)) w();
    if (this.flushWaiters.length === 0) return;
    const done = this.doneBelow();
    for (let i = this.flushWaiters.length - 1; i >= 0; i--) {
      const w = this.flushWaiters[i];
      if (w !== undefined && w.upTo <= done) {
        this.flushWaiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  /** Posts until InfluxDB answers; transient failures are retried. Returns the 4xx error of a rejected batch. */
  private async postBatch(batch: string[]): Promise<HttpError | undefined> {
    const body = batch.join('\n');
    for (let attempt = 0; ; attempt++) {
      try {
        await this.post(body);
        return undefined;
      } catch (err) {
        if (!retriable(err)) return err instanceof HttpError ? err : new HttpError(400, String(err));
        this.stats.retries++;
        if (attempt % 10 === 0) this.log.warn({ err, attempt, lines: batch.length }, 'influx write failed, retrying');
        await sleep(backoffMs(attempt, 100, 5000));
      }
    }
  }

  /**
   * A rejected batch is split in halves and each half sent again, down to the single lines InfluxDB refuses:
   * those are quarantined. Sending a good point twice is harmless (same series and time overwrite), and a
   * rejection is rare, so the bisection costs only when it happens.
   */
  private async send(batch: string[]): Promise<void> {
    const rejected = await this.postBatch(batch);
    if (rejected === undefined) {
      this.stats.written += batch.length;
      return;
    }
    if (batch.length > 1) {
      const mid = Math.ceil(batch.length / 2);
      await this.send(batch.slice(0, mid));
      await this.send(batch.slice(mid));
      return;
    }
    this.stats.failedBatches++;
    this.stats.quarantined++;
    const reason = `${rejected.statusCode}: ${(rejected.body ?? rejected.message).slice(0, 300)}`;
    this.log.error({ line: batch[0]?.slice(0, 200), reason }, 'influx rejected a point; quarantined');
    await this.opts.quarantine?.(batch, reason).catch((err: unknown) => this.log.error({ err }, 'quarantine failed; the point is only logged'));
  }

  private pump(): void {
    while (this.inFlight < this.concurrency && this.buffer.length > 0) {
      const first = this.accepted - this.buffer.length;
      const batch = this.buffer.length <= this.batchSize ? this.buffer : this.buffer.slice(0, this.batchSize);
      this.buffer = this.buffer.length <= this.batchSize ? [] : this.buffer.slice(this.batchSize);
      this.inFlight++;
      this.flying.add(first);
      void this.send(batch).finally(() => {
        this.inFlight--;
        this.flying.delete(first);
        this.queued -= batch.length;
        this.notify();
        if (this.buffer.length >= this.batchSize || (this.buffer.length > 0 && (this.closed || this.flushWaiters.length > 0))) this.pump();
        else if (this.buffer.length > 0) this.schedule();
      });
    }
  }

  private schedule(): void {
    if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, this.flushMs);
    }
  }
}

/** The client logs to the console by default; route it through pino (no secrets in its messages), once per process. */
function routeClientLogger(log: Logger): void {
  if (loggerRouted) return;
  setLogger({ error: (message, error) => log.debug({ err: error }, message), warn: (message, error) => log.debug({ err: error }, message) });
  loggerRouted = true;
}

/** INFLUX_API if set, else what /ping reports. */
async function resolveApi(client: InfluxDB, cfg: AppConfig['influx']): Promise<'v1' | 'v2'> {
  if (cfg.api !== undefined) return cfg.api;
  try {
    return (await detectApi(client)).api;
  } catch (err) {
    throw new ServiceError(`InfluxDB not reachable at ${cfg.url} (set INFLUX_URL)`, { cause: err });
  }
}

/** Connects, detects the API (unless INFLUX_API says), and on 1.x makes sure the database exists. */
export async function createInflux(cfg: AppConfig['influx'], log: Logger): Promise<Influx> {
  routeClientLogger(log);
  const client = new InfluxDB({ url: cfg.url, token: cfg.token, timeout: 30_000 });
  const api = await resolveApi(client, cfg);
  const db = cfg.bucket;
  const authQuery = api === 'v1' && cfg.username ? `&u=${encodeURIComponent(cfg.username)}&p=${encodeURIComponent(cfg.password ?? '')}` : '';
  const writePath =
    api === 'v1'
      ? `/write?db=${encodeURIComponent(db)}&precision=ms${authQuery}`
      : `/api/v2/write?org=${encodeURIComponent(cfg.org ?? '')}&bucket=${encodeURIComponent(db)}&precision=ms`;
  const writers = new Set<LineWriter>();

  async function post(body: string): Promise<void> {
    await client.transport.request(writePath, body, { method: 'POST', headers: { 'content-type': 'text/plain; charset=utf-8' }, gzipThreshold: 1 << 20 });
  }

  async function query(influxql: string, opts: { db?: string } = {}): Promise<InfluxSeries[]> {
    const path = `/query?db=${encodeURIComponent(opts.db ?? db)}&epoch=ms${authQuery}`;
    let res: unknown;
    try {
      res = await client.transport.request(path, `q=${encodeURIComponent(influxql)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      });
    } catch (err) {
      throw new ServiceError(`InfluxDB query failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return parseQueryResponse(res);
  }

  return {
    api,
    writer(opts: WriterOptions = {}) {
      const w = new BatchWriter(post, log, opts, (closed) => writers.delete(closed));
      writers.add(w);
      return w;
    },
    query,
    async ensureDatabase() {
      if (api !== 'v1') return; // 2.x/3.x buckets are provisioned (docker compose init)
      await query(`CREATE DATABASE ${qid(db)}`);
    },
    async ping() {
      return (await detectApi(client)).version;
    },
    async close() {
      await Promise.all([...writers].map((w) => w.close()));
    },
  };
}

/** /query JSON → flat series list; an InfluxQL error becomes a ServiceError with the server's message. */
export function parseQueryResponse(res: unknown): InfluxSeries[] {
  const out: InfluxSeries[] = [];
  if (res === null || typeof res !== 'object') return out;
  const results = (res as { results?: unknown }).results;
  if (!Array.isArray(results)) return out;
  for (const r of results) {
    if (r === null || typeof r !== 'object') continue;
    const rr = r as { error?: unknown; series?: unknown };
    if (typeof rr.error === 'string') throw new ServiceError(`InfluxQL error: ${rr.error}`);
    if (!Array.isArray(rr.series)) continue;
    for (const s of rr.series) {
      if (s === null || typeof s !== 'object') continue;
      const ss = s as { name?: unknown; tags?: unknown; columns?: unknown; values?: unknown };
      out.push({
        name: typeof ss.name === 'string' ? ss.name : '',
        tags: ss.tags !== null && typeof ss.tags === 'object' ? Object.fromEntries(Object.entries(ss.tags).map(([k, v]) => [k, String(v)])) : {},
        columns: Array.isArray(ss.columns) ? ss.columns.map(String) : [],
        values: Array.isArray(ss.values) ? ss.values.filter(Array.isArray) : [],
      });
    }
  }
  return out;
}

/** Rows of one series as objects keyed by column. */
export function rows(series: InfluxSeries): Array<Record<string, unknown>> {
  return series.values.map((v) => Object.fromEntries(series.columns.map((c, i) => [c, v[i]])));
}

/** The values of a `SHOW TAG VALUES` answer, sorted and distinct. */
export function tagValues(series: InfluxSeries[]): string[] {
  const out = new Set<string>();
  for (const s of series) {
    const vi = s.columns.indexOf('value');
    for (const v of s.values) {
      const x = v[vi];
      if (typeof x === 'string') out.add(x);
    }
  }
  return [...out].sort();
}
