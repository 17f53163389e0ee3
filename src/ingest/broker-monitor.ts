import type { MqttClient } from 'mqtt';
import type { AppConfig } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { connectMqtt } from '../shared/mqtt.js';

/**
 * The broker's own view of its queues, from Mosquitto's $SYS tree: how many messages it holds (queued for
 * sessions such as the ingest's, in flight, retained) and how many it has dropped. A queue that grows means the
 * ingest is not keeping up (or is away); drops mean a queue hit `max_queued_messages` and the broker discarded
 * readings it may already have acknowledged to publishers. Written to `pipeline` by the ingest (broker_stored,
 * broker_stored_bytes, broker_dropped) for the pipeline-health dashboard and its alert rules.
 */

export const BROKER_TOPICS = {
  stored: '$SYS/broker/store/messages/count',
  storedBytes: '$SYS/broker/store/messages/bytes',
  dropped: '$SYS/broker/publish/messages/dropped',
} as const;

const BROKER_KEYS = ['stored', 'storedBytes', 'dropped'] as const satisfies ReadonlyArray<keyof typeof BROKER_TOPICS>;

export type BrokerStats = { -readonly [K in keyof typeof BROKER_TOPICS]?: number };

export interface BrokerMonitor {
  /**
   * Latest values heard (a broker that publishes no $SYS, or denies it, leaves them undefined). Mosquitto publishes
   * the dropped count only once it changes: while the store count is heard and no drop yet, dropped is 0.
   */
  readonly stats: BrokerStats;
  close(): Promise<void>;
}

/** Parses one $SYS message into the stats it updates; anything else is ignored. */
export function applyBrokerMessage(stats: BrokerStats, topic: string, payload: Buffer): void {
  const key = BROKER_KEYS.find((k) => BROKER_TOPICS[k] === topic);
  if (key === undefined) return;
  const n = Number(payload.toString('utf8').trim());
  if (Number.isFinite(n) && n >= 0) stats[key] = n;
}

/** A separate, clean QoS 0 connection: $SYS must never pass through the ingest's acknowledged path. */
export async function startBrokerMonitor(cfg: AppConfig['mqtt'], clientId: string, log: Logger): Promise<BrokerMonitor> {
  const stats: BrokerStats = {};
  const client: MqttClient = await connectMqtt(cfg, { clientId, clean: true });
  client.on('message', (topic, payload) => {
    applyBrokerMessage(stats, topic, payload);
    if (stats.stored !== undefined) stats.dropped ??= 0;
  });
  client.on('error', (err) => log.debug({ err }, 'broker monitor'));
  try {
    await client.subscribeAsync(Object.values(BROKER_TOPICS), { qos: 0 });
  } catch (err) {
    log.warn({ err }, 'broker $SYS not readable: the broker queue is not monitored (grant the ingest account read on $SYS/broker/#)');
  }
  return {
    stats,
    close: () => client.endAsync(true),
  };
}
