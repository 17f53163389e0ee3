import { IngestConfig } from '../contracts/config-ingest.js';
import { loadSection } from '../shared/config.js';
import { createInflux } from '../shared/influx.js';
import { closeRedis, createRedis, influxQuarantine } from '../shared/redis.js';
import { once, type RoleContext, type RoleHandle } from '../shared/role.js';
import { startBrokerMonitor } from './broker-monitor.js';
import { Ingestor, isTransientIngestError } from './ingest.js';
import { startMqttSource, type MqttSource } from './mqtt-source.js';
import { statsLoop } from '../shared/stats.js';
import { Counter, Gauge, metric, type Registry } from '../shared/metrics.js';

/** The MQTT sources' flow control, read at scrape time. */
function sourceMetrics(reg: Registry, sources: readonly MqttSource[]): void {
  const sum = (k: 'inFlight' | 'holds' | 'acksDropped'): number => sources.reduce((a, s) => a + s.stats[k], 0);
  metric(
    reg,
    'meterflow_ingest_handoffs_in_flight',
    () =>
      new Gauge({
        name: 'meterflow_ingest_handoffs_in_flight',
        help: 'MQTT messages being handed off (not yet acknowledged)',
        registers: [reg],
        collect() {
          this.set(sum('inFlight'));
        },
      }),
  );
  metric(
    reg,
    'meterflow_ingest_loop_holds_total',
    () =>
      new Counter({
        name: 'meterflow_ingest_loop_holds_total',
        help: 'Times reading from the broker paused because the hand-offs in flight reached ingest.yaml inFlight',
        registers: [reg],
        collect() {
          this.reset();
          this.inc(sum('holds'));
        },
      }),
  );
  metric(
    reg,
    'meterflow_ingest_acks_dropped_total',
    () =>
      new Counter({
        name: 'meterflow_ingest_acks_dropped_total',
        help: 'PUBACKs dropped because their connection was gone (the broker redelivers those messages)',
        registers: [reg],
        collect() {
          this.reset();
          this.inc(sum('acksDropped'));
        },
      }),
  );
}

export interface IngestHandle extends RoleHandle {
  readonly ingestor: Ingestor;
}

/** The ingest role: MQTT (QoS 1, persistent session) → validated, deduplicated → Redis Streams + InfluxDB. */
export async function startIngest(ctx: RoleContext): Promise<IngestHandle> {
  const { config, metrics } = ctx;
  const log = ctx.log.child({ component: 'ingest' });
  const cfg = loadSection('ingest', IngestConfig);

  const redis = createRedis(config.redis, 'meterflow-ingest');
  const influx = await createInflux(config.influx, log);
  await influx.ensureDatabase();
  const writer = influx.writer({
    batchSize: cfg.influx.batchSize,
    flushMs: cfg.influx.flushMs,
    highWater: cfg.influx.highWater,
    quarantine: influxQuarantine(redis, `ingest:${config.instance}`, cfg.dlqMaxLen),
  });
  const ingestor = new Ingestor({ redis, writer, cfg, shards: config.streamShards, instance: config.instance, log, metrics });
  // Taken before connecting: a persistent session's queued messages arrive with the CONNACK, and they count too.
  let prev = ingestor.snapshot();

  const group = config.mqtt.sharedGroup ?? (cfg.connections > 1 ? 'meterflow' : undefined);
  const sources: MqttSource[] = [];
  for (let i = 0; i < cfg.connections; i++) {
    const clientId = cfg.connections > 1 ? `${config.mqtt.clientId}-ingest-${i}` : `${config.mqtt.clientId}-ingest`;
    sources.push(
      await startMqttSource(
        config.mqtt,
        {
          clientId,
          sharedGroup: group,
          log,
          maxInFlight: cfg.inFlight.messages,
          maxInFlightBytes: cfg.inFlight.bytes,
          isTransient: isTransientIngestError,
          giveUp: (t, p, err) => ingestor.giveUp(t, p, err),
        },
        (t, p) => ingestor.handle(t, p),
      ),
    );
  }

  sourceMetrics(metrics, sources);
  const broker = await startBrokerMonitor(config.mqtt, `${config.mqtt.clientId}-sys`, log);
  const stats = statsLoop(
    cfg.statsIntervalSeconds,
    log,
    () => {
      const lines = ingestor.statsLines(prev, Date.now(), broker.stats);
      prev = ingestor.snapshot();
      return lines;
    },
    (lines) => writer.write(lines),
  );
  log.info({ shards: config.streamShards, connections: cfg.connections, influxApi: influx.api }, 'ingest started');

  const close = once(async () => {
    stats.stop();
    await Promise.all(sources.map((s) => s.close()));
    await broker.close();
    writer.write(ingestor.statsLines(prev, Date.now(), broker.stats));
    await influx.close();
    await closeRedis(redis);
    log.info({ totals: ingestor.totals }, 'ingest stopped');
  });
  return { ingestor, close };
}
