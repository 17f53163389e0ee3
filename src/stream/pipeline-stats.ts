import type { Registry } from 'prom-client';
import type { LineWriter } from '../shared/influx.js';
import { int, lp } from '../shared/line-protocol.js';
import type { Logger } from '../shared/logger.js';
import { Counter, Gauge, Histogram, metric } from '../shared/metrics.js';
import { statsLoop } from '../shared/stats.js';
import { addCounts, type BatchOutput, emptyCounts } from './shard-work.js';

/** The stream role's Prometheus metrics (get-or-create: several roles may share a process). */
export function streamMetrics(metrics: Registry): { readingsTotal: Counter; eventsTotal: Counter; batchSeconds: Histogram; watermarkGauge: Gauge } {
  return {
    readingsTotal: metric(
      metrics,
      'meterflow_stream_readings_total',
      () =>
        new Counter({
          name: 'meterflow_stream_readings_total',
          help: 'Readings consumed by the stream worker, by outcome',
          labelNames: ['outcome'],
          registers: [metrics],
        }),
    ),
    eventsTotal: metric(
      metrics,
      'meterflow_stream_events_total',
      () =>
        new Counter({
          name: 'meterflow_stream_events_total',
          help: 'Detection events enqueued, by type and status',
          labelNames: ['type', 'status'],
          registers: [metrics],
        }),
    ),
    batchSeconds: metric(
      metrics,
      'meterflow_stream_batch_seconds',
      () =>
        new Histogram({
          name: 'meterflow_stream_batch_seconds',
          help: 'Time to process one read of the shards and hand its outputs on (checkpoints run in the background)',
          buckets: [0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
          registers: [metrics],
        }),
    ),
    watermarkGauge: metric(
      metrics,
      'meterflow_stream_watermark_ms',
      () => new Gauge({ name: 'meterflow_stream_watermark_ms', help: 'Event-time watermark per shard', labelNames: ['shard'], registers: [metrics] }),
    ),
  };
}

export interface PipelineStatsDeps {
  metrics: ReturnType<typeof streamMetrics>;
  instance: string;
  writer: LineWriter;
  log: Logger;
}

/**
 * What the stream worker did: Prometheus metrics per batch, and the `pipeline` and `dlq` points the pipeline-health
 * dashboard reads (docs/operators.md), counted per period between two stats rounds.
 */
export class PipelineStats {
  private readonly period = emptyCounts();
  private readonly deadByReason = new Map<string, number>();
  private loop: { stop(): void } | undefined;

  constructor(private readonly d: PipelineStatsDeps) {}

  onBatch(shard: number, out: BatchOutput, ms: number, watermark: number): void {
    const m = this.d.metrics;
    m.batchSeconds.observe(ms / 1000);
    addCounts(this.period, out.counts);
    const c = out.counts;
    m.readingsTotal.inc({ outcome: 'accepted' }, c.accepted);
    m.readingsTotal.inc({ outcome: 'duplicate' }, c.duplicates + c.conflicts);
    m.readingsTotal.inc({ outcome: 'late' }, c.late);
    m.readingsTotal.inc({ outcome: 'future' }, c.future);
    for (const dl of out.deadLetters) this.deadByReason.set(dl.reason, (this.deadByReason.get(dl.reason) ?? 0) + 1);
    m.watermarkGauge.set({ shard: String(shard) }, watermark);
    if (out.counts.late > 0) this.d.log.debug({ shard, late: out.counts.late }, 'late reads dead-lettered');
  }

  /** The period's points; `lastRx` is the ingest time of the newest entry processed, for the lag. */
  lines(now: number, backlog: number, lastRx: number): string[] {
    const c = this.period;
    const { writer, instance } = this.d;
    const lines = [
      lp(
        'pipeline',
        { role: 'stream', instance },
        {
          readings: int(c.readings),
          rejected: int(c.late + c.future + c.malformed),
          duplicates: int(c.duplicates + c.conflicts),
          lag: int(backlog > 0 && lastRx > 0 ? Math.max(0, now - lastRx) : 0),
          influx_backlog: int(writer.backlog),
          influx_retries: int(writer.stats.retries),
          influx_failed_batches: int(writer.stats.failedBatches),
        },
        now,
      ),
    ];
    for (const [reason, n] of this.deadByReason) lines.push(lp('dlq', { reason, instance }, { count: int(n) }, now));
    this.deadByReason.clear();
    return lines;
  }

  /** Writes a period's points every `seconds`; `backlog` is the entries left in the owned streams. */
  start(seconds: number, backlog: () => Promise<number>, lastRx: () => number): void {
    this.loop = statsLoop(
      seconds,
      this.d.log,
      async () => {
        const entries = await backlog();
        const lines = this.lines(Date.now(), entries, lastRx());
        Object.assign(this.period, emptyCounts());
        return lines;
      },
      (lines) => this.d.writer.write(lines),
    );
  }

  stop(): void {
    this.loop?.stop();
  }
}
