import type { MqttClient } from 'mqtt';
import type { AppConfig } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { connectMqtt } from '../shared/mqtt.js';

export const INGEST_TOPICS = ['meters/+/readings', 'meters/+/events', 'concentrators/+/readings'];

export type MessageHandler = (topic: string, payload: Buffer) => Promise<void>;

export interface MqttSource {
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * QoS 1 subscriber on a persistent session whose PUBACK waits for the handler: MQTT.js sends the PUBACK
 * only when `handleMessage` calls back, so a crash before the hand-off makes the broker redeliver.
 * Handler failures are retried (the handler is idempotent); on close, unfinished messages stay unacknowledged.
 */
export async function startMqttSource(
  cfg: AppConfig['mqtt'],
  opts: { clientId: string; sharedGroup?: string; log: Logger },
  handler: MessageHandler,
): Promise<MqttSource> {
  const { log } = opts;
  let closing = false;
  let inFlight: Promise<void> = Promise.resolve();

  const client: MqttClient = await connectMqtt(cfg, { clientId: opts.clientId, clean: false });
  client.handleMessage = (packet, callback) => {
    if (closing) return; // left unacknowledged: redelivered to the next session
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const run = async (): Promise<void> => {
      for (let attempt = 0; ; attempt++) {
        try {
          await handler(packet.topic, payload);
          callback();
          return;
        } catch (err) {
          if (closing) return;
          if (attempt % 20 === 0) log.error({ err, topic: packet.topic, attempt }, 'hand-off failed, retrying');
          await sleep(Math.min(50 * 2 ** Math.min(attempt, 6), 3000));
        }
      }
    };
    inFlight = run();
  };
  client.on('error', (err) => log.warn({ err }, 'mqtt error'));
  client.on('reconnect', () => log.info('mqtt reconnecting'));
  client.on('offline', () => log.warn('mqtt offline'));
  const topics = INGEST_TOPICS.map((t) => (opts.sharedGroup ? `$share/${opts.sharedGroup}/${t}` : t));
  await client.subscribeAsync(topics, { qos: 1 });
  log.info({ topics, clientId: opts.clientId }, 'subscribed');

  let closed: Promise<void> | undefined;
  return {
    close() {
      closed ??= (async () => {
        closing = true;
        await inFlight;
        await client.endAsync(false);
      })();
      return closed;
    },
  };
}
