import type { MqttClient, Packet } from 'mqtt';
import type { AppConfig } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { connectMqtt } from '../shared/mqtt.js';

export const INGEST_TOPICS = ['meters/+/readings', 'meters/+/events', 'concentrators/+/readings'];

export type MessageHandler = (topic: string, payload: Buffer) => Promise<void>;

export interface MqttSource {
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

type SendPacket = (packet: Packet, cb?: (err?: Error) => void, cbStorePut?: unknown, noStore?: boolean) => void;

/**
 * QoS 1 subscriber on a persistent session whose PUBACK waits for the durable hand-off, so a crash before it
 * makes the broker redeliver.
 *
 * MQTT.js sends the PUBACK when `handleMessage` calls back, and reads no further packet until then: one
 * message at a time, one Redis round trip each. To hand off many messages at once, `handleMessage` calls back
 * at once and the PUBACK itself is held (in `_sendPacket`) until that message's hand-off — and every earlier
 * one, since QoS 1 acknowledgements go out in arrival order (MQTT 3.1.1 §4.6) — has succeeded. In-flight
 * hand-offs are bounded by `maxInFlight`: past it, `handleMessage` holds its callback, which stops reading the
 * socket (backpressure to the broker). If this MQTT.js lacks `_sendPacket`, it falls back to one at a time.
 */
export async function startMqttSource(
  cfg: AppConfig['mqtt'],
  opts: { clientId: string; sharedGroup?: string; log: Logger; maxInFlight?: number },
  handler: MessageHandler,
): Promise<MqttSource> {
  const { log } = opts;
  const maxInFlight = opts.maxInFlight ?? 256;
  let closing = false;
  /** messageId → resolves when its PUBACK may go out. */
  const held = new Map<number, Promise<void>>();
  const inFlight = new Set<Promise<void>>();
  let lastAck: Promise<void> = Promise.resolve();

  const handOff = async (topic: string, payload: Buffer): Promise<boolean> => {
    for (let attempt = 0; ; attempt++) {
      try {
        await handler(topic, payload);
        return true;
      } catch (err) {
        if (closing) return false;
        if (attempt % 20 === 0) log.error({ err, topic, attempt }, 'hand-off failed, retrying');
        await sleep(Math.min(50 * 2 ** Math.min(attempt, 6), 3000));
      }
    }
  };

  let pipelined = false;
  // Handlers go in before the CONNACK: the session's queued messages may arrive with it.
  const prepare = (client: MqttClient): void => {
    const internal = client as unknown as { _sendPacket?: SendPacket };
    const originalSend = internal._sendPacket?.bind(client);
    pipelined = originalSend !== undefined;
    if (originalSend) {
      internal._sendPacket = (packet, cb, cbStorePut, noStore) => {
        const gate = packet.cmd === 'puback' && packet.messageId !== undefined ? held.get(packet.messageId) : undefined;
        if (gate === undefined || packet.messageId === undefined) return originalSend(packet, cb, cbStorePut, noStore);
        const id = packet.messageId;
        cb?.(); // lets MQTT.js read the next packet now
        void gate.then(
          () => {
            held.delete(id);
            originalSend(packet, undefined, cbStorePut, noStore);
          },
          () => held.delete(id), // closing: leave it unacknowledged, the broker redelivers
        );
      };
    } else {
      log.warn('MQTT.js internals changed: ingest acknowledges one message at a time');
    }

    client.handleMessage = (packet, callback) => {
      if (closing) return; // left unacknowledged: redelivered to the next session
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
      const work = handOff(packet.topic, payload);
      if (!pipelined) {
        const p = work.then((ok) => (ok ? callback() : undefined));
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        return;
      }
      const done = work.then(() => undefined);
      inFlight.add(done);
      void done.finally(() => inFlight.delete(done));
      if (packet.qos > 0 && packet.messageId !== undefined) {
        const prev = lastAck;
        const gate = Promise.all([prev, work]).then(([, ok]) => {
          if (!ok) throw new Error('closing');
        });
        gate.catch(() => undefined);
        lastAck = gate.catch(() => undefined);
        held.set(packet.messageId, gate);
      }
      if (inFlight.size < maxInFlight) callback();
      else void Promise.race(inFlight).then(() => callback());
    };
  };
  const client: MqttClient = await connectMqtt(cfg, { clientId: opts.clientId, clean: false }, 10_000, prepare);
  client.on('error', (err) => log.warn({ err }, 'mqtt error'));
  client.on('reconnect', () => log.info('mqtt reconnecting'));
  client.on('offline', () => log.warn('mqtt offline'));
  const topics = INGEST_TOPICS.map((t) => (opts.sharedGroup ? `$share/${opts.sharedGroup}/${t}` : t));
  await client.subscribeAsync(topics, { qos: 1 });
  log.info({ topics, clientId: opts.clientId, pipelined }, 'subscribed');

  let closed: Promise<void> | undefined;
  return {
    close() {
      closed ??= (async () => {
        closing = true;
        await Promise.all([...inFlight]);
        await lastAck;
        await sleep(0); // let the held PUBACKs reach the socket
        await client.endAsync(false);
      })();
      return closed;
    },
  };
}
