import { backoffMs } from '../domain/backoff.js';
import type { Duplex } from 'node:stream';
import type { MqttClient } from 'mqtt';
import { generate } from 'mqtt-packet';
import type { AppConfig } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { connectMqtt } from '../shared/mqtt.js';

/** Meter-exchange work orders come on headend/meters/+/exchange, which only the head-end account may write (deploy/mosquitto/acl). */
export const INGEST_TOPICS = ['meters/+/readings', 'meters/+/events', 'concentrators/+/readings', 'headend/meters/+/exchange'];

export type MessageHandler = (topic: string, payload: Buffer) => Promise<void>;

export interface MqttSourceStats {
  /** PUBACKs written on the connection that received their message. */
  acksSent: number;
  /** PUBACKs dropped because their connection was gone (the broker redelivers those messages). */
  acksDropped: number;
  /** Messages given up on after `maxAttempts` failed hand-offs (dead-lettered by `giveUp`). */
  givenUp: number;
  /** Hand-offs started and not finished. */
  inFlight: number;
}

export interface MqttSource {
  readonly stats: MqttSourceStats;
  close(): Promise<void>;
}

export interface MqttSourceOptions {
  clientId: string;
  sharedGroup?: string;
  log: Logger;
  /** Hand-offs in flight above which a warning is logged: the broker's in-flight window is what bounds them. */
  maxInFlight?: number;
  /** Failed hand-offs (not transient) before the message is given up on. */
  maxAttempts?: number;
  /** Errors that are retried without limit (the datastore is away, not the message bad). */
  isTransient?: (err: unknown) => boolean;
  /** Takes a message no hand-off could handle (dead letter); when it throws, hand-offs go on being retried. */
  giveUp?: (topic: string, payload: Buffer, err: unknown) => Promise<void>;
  keepaliveSeconds?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Given to MQTT.js' `handleMessage` callback: it then sends no PUBACK of its own (and reads the next packet). */
const ACK_HELD = new Error('PUBACK held by meterflow until the message is handed off');

/**
 * QoS 1 subscriber on a persistent session whose PUBACK waits for the durable hand-off, so a crash before it
 * makes the broker redeliver.
 *
 * MQTT.js reads no further packet until `handleMessage` calls back, and then sends its own PUBACK. Here
 * `handleMessage` calls back at once with an error, which makes MQTT.js skip its PUBACK (pinned by
 * tests/integration/ingest-acks.test.ts), and the PUBACK is written by this module on **the connection that
 * received the message**, once that message's hand-off — and every earlier one on that connection, since QoS 1
 * acknowledgements go out in arrival order (MQTT 3.1.1 §4.6) — has succeeded. When that connection is gone by
 * then, the PUBACK is dropped, never queued for the next one: the broker redelivers the message there, and the
 * new copy gets its own PUBACK after its own hand-off.
 *
 * The packet loop is never held (a held loop stops reading PINGRESP, and a slow hand-off would cost the
 * connection): backpressure comes from the held PUBACKs, which fill the broker's in-flight window for this
 * client (Mosquitto's max_inflight_messages, 1000 in deploy/) until it stops sending. That window is what bounds
 * the ingest's memory; past `maxInFlight` a warning says the window is set too wide.
 *
 * A hand-off that fails is retried with backoff; transient errors (`isTransient`) without limit, anything else
 * `maxAttempts` times, after which the message goes to `giveUp` (a dead letter) and is acknowledged, so one
 * poison message cannot block every later PUBACK.
 */
export async function startMqttSource(cfg: AppConfig['mqtt'], opts: MqttSourceOptions, handler: MessageHandler): Promise<MqttSource> {
  const { log } = opts;
  const maxInFlight = opts.maxInFlight ?? 1024;
  const keepalive = opts.keepaliveSeconds ?? 30;
  const maxAttempts = opts.maxAttempts ?? 5;
  const isTransient = opts.isTransient ?? (() => false);
  const stats: MqttSourceStats = { acksSent: 0, acksDropped: 0, givenUp: 0, inFlight: 0 };
  let closing = false;
  let overCap = false;
  let client: MqttClient | undefined;
  /** Hand-offs and PUBACK chain links not settled yet (what close() waits for). */
  const inFlight = new Set<Promise<unknown>>();
  let handOffs = 0;
  /** Per connection: the tail of its in-order PUBACK chain. */
  const chains = new WeakMap<Duplex, Promise<void>>();

  const track = (p: Promise<unknown>): void => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };

  /** true once handed off (or given up on and dead-lettered); false when closing first. */
  const handOff = async (topic: string, payload: Buffer): Promise<boolean> => {
    let failures = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        await handler(topic, payload);
        return true;
      } catch (err) {
        if (closing) return false;
        if (!isTransient(err)) failures++;
        if (failures >= maxAttempts && opts.giveUp !== undefined) {
          try {
            await opts.giveUp(topic, payload, err);
            stats.givenUp++;
            log.error({ err, topic, attempts: attempt + 1 }, 'hand-off failed, message dead-lettered');
            return true;
          } catch (dlqErr) {
            if (attempt % 20 === 0) log.error({ err: dlqErr, topic }, 'dead-lettering failed too, retrying');
          }
        } else if (attempt % 20 === 0) {
          log.warn({ err, topic, attempt }, 'hand-off failed, retrying');
        }
        await sleep(backoffMs(attempt, 50, 3000));
      }
    }
  };

  /** Writes the PUBACK on `stream` only if it is still the live connection; else drops it. */
  const puback = (stream: Duplex, messageId: number): void => {
    if (client === undefined || client.stream !== stream || !client.connected || stream.destroyed || !stream.writable) {
      stats.acksDropped++;
      return;
    }
    // The PUBACKs settled together (one coalesced hand-off) leave in one write.
    if (stream.writableCorked === 0) {
      stream.cork();
      process.nextTick(() => stream.uncork());
    }
    stream.write(generate({ cmd: 'puback', messageId }));
    stats.acksSent++;
  };

  // Handlers go in before the CONNACK: the session's queued messages may arrive with it.
  const prepare = (c: MqttClient): void => {
    client = c;
    c.handleMessage = (packet, callback) => {
      if (closing) return callback(ACK_HELD); // unacknowledged: redelivered to the next session
      const stream = c.stream;
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
      const work = handOff(packet.topic, payload);
      handOffs++;
      stats.inFlight = handOffs;
      void work.finally(() => {
        handOffs--;
        stats.inFlight = handOffs;
      });
      track(work);
      if (packet.qos === 1 && packet.messageId !== undefined) {
        const id = packet.messageId;
        const gate = (chains.get(stream) ?? Promise.resolve()).then(async () => {
          if (await work) puback(stream, id);
        });
        const tail = gate.catch((err: unknown) => log.error({ err }, 'PUBACK chain failed'));
        chains.set(stream, tail);
        track(tail);
      }
      if (handOffs > maxInFlight && !overCap) {
        overCap = true;
        log.warn({ inFlight: handOffs, maxInFlight }, "hand-offs in flight over the cap: lower the broker's max_inflight_messages for this client");
      } else if (handOffs <= maxInFlight / 2) overCap = false;
      callback(packet.qos === 0 ? undefined : ACK_HELD);
    };
  };
  const connected = await connectMqtt(cfg, { clientId: opts.clientId, clean: false, keepalive }, 10_000, prepare);
  connected.on('error', (err) => log.warn({ err }, 'mqtt error'));
  connected.on('reconnect', () => log.info('mqtt reconnecting'));
  connected.on('offline', () => log.warn({ acksDropped: stats.acksDropped }, 'mqtt offline'));
  const topics = INGEST_TOPICS.map((t) => (opts.sharedGroup ? `$share/${opts.sharedGroup}/${t}` : t));
  await connected.subscribeAsync(topics, { qos: 1 });
  log.info({ topics, clientId: opts.clientId }, 'subscribed');

  let closed: Promise<void> | undefined;
  return {
    stats,
    close() {
      closed ??= (async () => {
        closing = true;
        while (inFlight.size > 0) await Promise.all([...inFlight]);
        await sleep(0); // let the last PUBACKs reach the socket
        await connected.endAsync(false);
      })();
      return closed;
    },
  };
}
