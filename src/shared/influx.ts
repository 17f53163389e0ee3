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

/** Connects, detects the API (unless INFLUX_API says), and on 1.x makes sure the database exists. */
export async function createInflux(cfg: AppConfig['influx'], log: Logger): Promise<Influx> {
  if (!loggerRouted) {
    // The client logs to the console by default; route it through pino (no secrets in its messages).
    setLogger({ error: (message, error) => log.debug({ err: error }, message), warn: (message, error) => log.debug({ err: error }, message) });
    loggerRouted = true;
  }
  const client = new InfluxDB({ url: cfg.url, token: cfg.token, timeout: 30_000 });
  let api = cfg.api;
  if (api === undefined) {
    try {
      api = (await detectApi(client)).api;
    } catch (err) {
      throw new ServiceError(`InfluxDB not reachable at ${cfg.url} (set INFLUX_URL)`, { cause: err });
    }
  }
  const resolvedApi = api;
  const db = cfg.bucket;
  const authQuery = resolvedApi === 'v1' && cfg.username ? `&u=${encodeURIComponent(cfg.username)}&p=${encodeURIComponent(cfg.password ?? '')}` : '';
  const writePath =
    resolvedApi === 'v1'
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

  function writer(opts: WriterOptions = {}): LineWriter {
    const batchSize = opts.batchSize ?? 5000;
    const flushMs = opts.flushMs ?? 200;
    const highWater = opts.highWater ?? 50_000;
    const concurrency = opts.concurrency ?? 2;
    let buffer: string[] = [];
    let queued = 0; // lines buffered or in flight
    let inFlight = 0;
    /** Lines written so far: buffer[0] is line number `accepted - buffer.length`. */
    let accepted = 0;
    /** First line number of each batch in flight. */
    const flying = new Set<number>();
    let timer: NodeJS.Timeout | undefined;
    let closed = false;
    const flushWaiters: Array<{ upTo: number; resolve: () => void }> = [];
    const drainWaiters: Array<() => void> = [];
    const stats = { written: 0, failedBatches: 0, retries: 0, quarantined: 0 };

    /** Every line numbered below this is done (in InfluxDB or quarantined). */
    const doneBelow = (): number => {
      let low = buffer.length > 0 ? accepted - buffer.length : accepted;
      for (const f of flying) low = Math.min(low, f);
      return low;
    };

    const notify = (): void => {
      if (queued < highWater) for (const w of drainWaiters.splice(0)) w();
      if (flushWaiters.length === 0) return;
      const done = doneBelow();
      for (let i = flushWaiters.length - 1; i >= 0; i--) {
        const w = flushWaiters[i];
        if (w !== undefined && w.upTo <= done) {
          flushWaiters.splice(i, 1);
          w.resolve();
        }
      }
    };

    /** Posts until InfluxDB answers; transient failures are retried. Returns the 4xx error of a rejected batch. */
    async function post1(batch: string[]): Promise<HttpError | undefined> {
      const body = batch.join('\n');
      for (let attempt = 0; ; attempt++) {
        try {
          await post(body);
          return undefined;
        } catch (err) {
          if (!retriable(err)) return err instanceof HttpError ? err : new HttpError(400, String(err));
          stats.retries++;
          if (attempt % 10 === 0) log.warn({ err, attempt, lines: batch.length }, 'influx write failed, retrying');
          await sleep(backoffMs(attempt, 100, 5000));
        }
      }
    }

    /**
     * A rejected batch is split in halves and each half sent again, down to the single lines InfluxDB refuses:
     * those are quarantined. Sending a good point twice is harmless (same series and time overwrite), and a
     * rejection is rare, so the bisection costs only when it happens.
     */
    async function send(batch: string[]): Promise<void> {
      const rejected = await post1(batch);
      if (rejected === undefined) {
        stats.written += batch.length;
        return;
      }
      if (batch.length > 1) {
        const mid = Math.ceil(batch.length / 2);
        await send(batch.slice(0, mid));
        await send(batch.slice(mid));
        return;
      }
      stats.failedBatches++;
      stats.quarantined++;
      const reason = `${rejected.statusCode}: ${(rejected.body ?? rejected.message).slice(0, 300)}`;
      log.error({ line: batch[0]?.slice(0, 200), reason }, 'influx rejected a point; quarantined');
      await opts.quarantine?.(batch, reason).catch((err: unknown) => log.error({ err }, 'quarantine failed; the point is only logged'));
    }

    function pump(): void {
      while (inFlight < concurrency && buffer.length > 0) {
        const first = accepted - buffer.length;
        const batch = buffer.length <= batchSize ? buffer : buffer.slice(0, batchSize);
        buffer = buffer.length <= batchSize ? [] : buffer.slice(batchSize);
        inFlight++;
        flying.add(first);
        void send(batch).finally(() => {
          inFlight--;
          flying.delete(first);
          queued -= batch.length;
          notify();
          if (buffer.length >= batchSize || (buffer.length > 0 && (closed || flushWaiters.length > 0))) pump();
          else if (buffer.length > 0) schedule();
        });
      }
    }

    function schedule(): void {
      if (timer === undefined) {
        timer = setTimeout(() => {
          timer = undefined;
          pump();
        }, flushMs);
      }
    }

    const w: LineWriter = {
      write(lines) {
        if (lines.length === 0) return;
        for (const l of lines) buffer.push(l);
        queued += lines.length;
        accepted += lines.length;
        if (buffer.length >= batchSize) pump();
        else schedule();
      },
      get backlog() {
        return queued;
      },
      drained() {
        return queued < highWater ? Promise.resolve() : new Promise((r) => drainWaiters.push(r));
      },
      async flush() {
        if (timer) {
          clearTimeout(timer);
          timer = undefined;
        }
        pump();
        const upTo = accepted;
        if (doneBelow() >= upTo) return;
        await new Promise<void>((resolve) => {
          flushWaiters.push({ upTo, resolve });
          pump();
        });
      },
      async close() {
        closed = true;
        await w.flush();
        writers.delete(w);
      },
      stats,
    };
    writers.add(w);
    return w;
  }

  const influx: Influx = {
    api: resolvedApi,
    writer,
    query,
    async ensureDatabase() {
      if (resolvedApi !== 'v1') return; // 2.x/3.x buckets are provisioned (docker compose init)
      await query(`CREATE DATABASE ${qid(db)}`);
    },
    async ping() {
      return (await detectApi(client)).version;
    },
    async close() {
      await Promise.all([...writers].map((w) => w.close()));
    },
  };
  return influx;
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
