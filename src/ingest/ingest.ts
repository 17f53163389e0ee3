import { REJECT_REASONS, type Reading, type RejectReason } from '../contracts/reading.js';
import type { Registry } from 'prom-client';
import type { IngestConfig } from '../contracts/config-ingest.js';
import type { LineWriter } from '../shared/influx.js';
import { int, lp } from '../shared/line-protocol.js';
import type { Logger } from '../shared/logger.js';
import { Counter, Histogram, metric } from '../shared/metrics.js';
import type { BrokerStats } from './broker-monitor.js';
import { DeadLetterQueue } from './dead-letters.js';
import { parseLimits, parseMessage, parseTopic, type ParseLimits } from './parse.js';
import { StreamAppender } from './stream-appender.js';
import type { RedisClient } from '../shared/redis.js';

export interface IngestTotals {
  messages: number;
  readings: number;
  events: number;
  duplicates: number;
  rejected: number;
  byReason: Partial<Record<RejectReason, number>>;
}

/**
 * Errors that say Redis is away or busy, not that the message is bad: the hand-off is retried without limit
 * (nothing acknowledged meanwhile). A lost connection never surfaces here: commands wait for the reconnect.
 */
export function isTransientIngestError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return /^(LOADING|BUSY|OOM|MISCONF|READONLY|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|NOREPLICAS)\b|ECONNRESET|ECONNREFUSED|ETIMEDOUT|Connection is closed|Stream isn't writeable/.test(
    err.message,
  );
}

export interface IngestDeps {
  redis: RedisClient;
  /** Pipeline-health points only: raw `reading` points are written by the stream worker, from the durable stream. */
  writer: LineWriter;
  cfg: IngestConfig;
  shards: number;
  instance: string;
  log: Logger;
  metrics: Registry;
  now?: () => number;
}

/**
 * The transport-free core of the ingest role: one MQTT message in, readings appended to their stream shards
 * (dedup + append atomic), rejections dead-lettered. Resolves only when the message is durably handed on, which
 * is when the MQTT layer may acknowledge it. InfluxDB is not on this path: the stream worker writes the raw
 * `reading` points from the stream, before it acknowledges the entries, so they survive any single fault.
 */
export class Ingestor {
  readonly totals: IngestTotals = { messages: 0, readings: 0, events: 0, duplicates: 0, rejected: 0, byReason: {} };
  private readonly appender: StreamAppender;
  private readonly dlq: DeadLetterQueue;
  private readonly limits: ParseLimits;
  private readonly now: () => number;
  private readonly m;

  constructor(private readonly deps: IngestDeps) {
    const { cfg } = deps;
    this.now = deps.now ?? Date.now;
    this.appender = new StreamAppender(deps.redis, deps.shards, {
      windowMs: Math.round(cfg.dedup.windowHours * 3_600_000),
      ttlSeconds: Math.round(Math.max(cfg.dedup.ttlHours, cfg.dedup.windowHours) * 3600),
    });
    this.dlq = new DeadLetterQueue(deps.redis, { maxLen: cfg.dlqMaxLen, payloadBytes: cfg.dlqPayloadBytes, source: `ingest:${deps.instance}` });
    this.limits = parseLimits(cfg);
    const reg = deps.metrics;
    this.m = {
      messages: metric(
        reg,
        'meterflow_ingest_messages_total',
        () => new Counter({ name: 'meterflow_ingest_messages_total', help: 'MQTT messages handled', registers: [reg] }),
      ),
      readings: metric(
        reg,
        'meterflow_ingest_readings_total',
        () => new Counter({ name: 'meterflow_ingest_readings_total', help: 'Readings by outcome', labelNames: ['result'], registers: [reg] }),
      ),
      rejected: metric(
        reg,
        'meterflow_ingest_rejected_total',
        () =>
          new Counter({ name: 'meterflow_ingest_rejected_total', help: 'Rejected input by reason (dead-lettered)', labelNames: ['reason'], registers: [reg] }),
      ),
      latency: metric(
        reg,
        'meterflow_ingest_handle_seconds',
        () =>
          new Histogram({
            name: 'meterflow_ingest_handle_seconds',
            help: 'Time from MQTT delivery to durable hand-off',
            buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.2, 1, 5],
            registers: [reg],
          }),
      ),
    };
  }

  async handle(topic: string, payload: Buffer): Promise<void> {
    const started = process.hrtime.bigint();
    const now = this.now();
    this.totals.messages++;
    this.m.messages.inc();
    const kind = parseTopic(topic);
    if (kind === undefined) {
      await this.reject(
        topic,
        payload,
        [
          {
            reason: 'bad_topic',
            detail: `topic ${topic.slice(0, 128)} is not meters/{meterId}/readings|events, concentrators/{id}/readings or headend/meters/{meterId}/exchange`,
          },
        ],
        now,
      );
      return;
    }
    const parsed = parseMessage(kind, payload, now, this.limits);
    const work: Array<Promise<unknown>> = [];
    let appended = 0;
    let duplicates: Reading[] = [];
    if (parsed.readings.length > 0) {
      work.push(
        this.appender.appendReadings(parsed.readings, now).then((res) => {
          appended = res.appended;
          duplicates = res.duplicates;
        }),
      );
    }
    let freshEvents = 0;
    if (parsed.events.length > 0) work.push(this.appender.appendEvents(parsed.events, now).then((n) => (freshEvents = n)));
    if (parsed.rejections.length > 0) work.push(this.reject(topic, payload, parsed.rejections, now));
    await Promise.all(work);

    this.totals.readings += appended;
    this.totals.duplicates += duplicates.length + parsed.events.length - freshEvents;
    this.totals.events += freshEvents;
    if (appended) this.m.readings.inc({ result: 'accepted' }, appended);
    if (duplicates.length) this.m.readings.inc({ result: 'duplicate' }, duplicates.length);
    this.m.latency.observe(Number(process.hrtime.bigint() - started) / 1e9);
  }

  /**
   * A message whose hand-off kept failing: dead-lettered whole (reason `handoff_failed`) so it can be acknowledged
   * and the messages behind it move on. Throws when the dead letter cannot be written either (then the source retries).
   */
  async giveUp(topic: string, payload: Buffer, err: unknown): Promise<void> {
    const why = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    await this.reject(topic, payload, [{ reason: 'handoff_failed', detail: `hand-off failed repeatedly: ${why.slice(0, 300)}` }], this.now());
  }

  private async reject(topic: string, payload: Buffer, rejections: Parameters<DeadLetterQueue['add']>[2], now: number): Promise<void> {
    await this.dlq.add(topic, payload, rejections, now);
    for (const r of rejections) {
      this.totals.rejected++;
      this.totals.byReason[r.reason] = (this.totals.byReason[r.reason] ?? 0) + 1;
      this.m.rejected.inc({ reason: r.reason });
    }
    this.m.readings.inc({ result: 'rejected' }, rejections.length);
    this.deps.log.debug({ topic, reasons: rejections.map((r) => r.reason) }, 'rejected input');
  }

  /** Pipeline-health points (deltas since the last call) for the Grafana dashboard; `broker`: the broker's $SYS view. */
  statsLines(prev: IngestTotals, nowMs: number, broker: BrokerStats = {}): string[] {
    const t = this.totals;
    const lines = [
      lp(
        'pipeline',
        { role: 'ingest', instance: this.deps.instance },
        {
          messages: int(t.messages - prev.messages),
          readings: int(t.readings - prev.readings),
          duplicates: int(t.duplicates - prev.duplicates),
          rejected: int(t.rejected - prev.rejected),
          influx_backlog: int(this.deps.writer.backlog),
          influx_retries: int(this.deps.writer.stats.retries),
          influx_failed_batches: int(this.deps.writer.stats.failedBatches),
          broker_stored: broker.stored === undefined ? undefined : int(broker.stored),
          broker_stored_bytes: broker.storedBytes === undefined ? undefined : int(broker.storedBytes),
          broker_dropped: broker.dropped === undefined ? undefined : int(broker.dropped),
        },
        nowMs,
      ),
    ];
    for (const reason of REJECT_REASONS) {
      const d = (t.byReason[reason] ?? 0) - (prev.byReason[reason] ?? 0);
      if (d > 0) lines.push(lp('dlq', { reason, instance: this.deps.instance }, { count: int(d) }, nowMs));
    }
    return lines;
  }

  snapshot(): IngestTotals {
    return { ...this.totals, byReason: { ...this.totals.byReason } };
  }
}
