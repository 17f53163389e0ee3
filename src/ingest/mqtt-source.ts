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

/** What the message handler, the PUBACK chains and close() share. */
interface SourceState {
  readonly stats: MqttSourceStats;
  closing: boolean;
  /** Over `maxInFlight` and warned about already. */
  overCap: boolean;
  /** The current client: a PUBACK goes out only on its live connection. */
  client: MqttClient | undefined;
  /** Hand-offs and PUBACK chain links not settled yet (what close() waits for). */
  readonly inFlight: Set<Promise<unknown>>;
  handOffs: number;
  /** Per connection: the tail of its in-order PUBACK chain. */
  readonly chains: WeakMap<Duplex, Promise<void>>;
}

/** The handler and the options it is retried by, defaults filled in. */
interface HandOffSettings {
  handler: MessageHandler;
  log: Logger;
  maxInFlight: number;
  maxAttempts: number;
  isTransient: (err: unknown) => boolean;
  giveUp: MqttSourceOptions['giveUp'];
}

function track(s: SourceState, p: Promise<unknown>): void {
  s.inFlight.add(p);
  void p.finally(() => s.inFlight.delete(p));
}

/** true once handed off (or given up on and dead-lettered); false when closing first. */
async function handOff(s: SourceState, h: HandOffSettings, topic: string, payload: Buffer): Promise<boolean> {
  const { log } = h;
  let failures = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      await h.handler(topic, payload);
      return true;
    } catch (err) {
      if (s.closing) return false;
      if (!h.isTransient(err)) failures++;
      if (failures >= h.maxAttempts && h.giveUp !== undefined) {
        try {
          await h.giveUp(topic, payload, err);
          s.stats.givenUp++;
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
}

/** Starts a message's hand-off, counted in `stats.inFlight` until it settles. */
function startHandOff(s: SourceState, h: HandOffSettings, topic: string, payload: Buffer): Promise<boolean> {
  const work = handOff(s, h, topic, payload);
  s.handOffs++;
  s.stats.inFlight = s.handOffs;
  void work.finally(() => {
    s.handOffs--;
    s.stats.inFlight = s.handOffs;
  });
  track(s, work);
  return work;
}

/** Writes the PUBACK on `stream` only if it is still the live connection; else drops it. */
function puback(s: SourceState, stream: Duplex, messageId: number): void {
  const { client } = s;
  if (client === undefined || client.stream !== stream || !client.connected || stream.destroyed || !stream.writable) {
    s.stats.acksDropped++;
    return;
  }
  // The PUBACKs settled together (one coalesced hand-off) leave in one write.
  if (stream.writableCorked === 0) {
    stream.cork();
    process.nextTick(() => stream.uncork());
  }
  stream.write(generate({ cmd: 'puback', messageId }));
  s.stats.acksSent++;
}

/** Message `id`'s PUBACK, once its hand-off and every earlier one on `stream` have succeeded. */
function chainPuback(s: SourceState, log: Logger, stream: Duplex, id: number, work: Promise<boolean>): void {
  const gate = (s.chains.get(stream) ?? Promise.resolve()).then(async () => {
    if (await work) puback(s, stream, id);
  });
  const tail = gate.catch((err: unknown) => log.error({ err }, 'PUBACK chain failed'));
  s.chains.set(stream, tail);
  track(s, tail);
}

/** Warns once when the hand-offs in flight pass `maxInFlight`; warns again after they fell to half of it. */
function checkInFlight(s: SourceState, h: HandOffSettings): void {
  if (s.handOffs > h.maxInFlight && !s.overCap) {
    s.overCap = true;
    h.log.warn(
      { inFlight: s.handOffs, maxInFlight: h.maxInFlight },
      "hand-offs in flight over the cap: lower the broker's max_inflight_messages for this client",
    );
  } else if (s.handOffs <= h.maxInFlight / 2) s.overCap = false;
}

/** `c.handleMessage`: starts the hand-off, chains its PUBACK and calls back at once (the packet loop is never held). */
function messageHandler(s: SourceState, h: HandOffSettings, c: MqttClient): MqttClient['handleMessage'] {
  return (packet, callback) => {
    if (s.closing) return callback(ACK_HELD); // unacknowledged: redelivered to the next session
    const stream = c.stream;
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const work = startHandOff(s, h, packet.topic, payload);
    if (packet.qos === 1 && packet.messageId !== undefined) chainPuback(s, h.log, stream, packet.messageId, work);
    checkInFlight(s, h);
    callback(packet.qos === 0 ? undefined : ACK_HELD);
  };
}

/** Logs the connection's changes, then subscribes to the ingest topics (shared when `sharedGroup` is set). */
async function subscribe(connected: MqttClient, opts: MqttSourceOptions, stats: MqttSourceStats): Promise<void> {
  const { log } = opts;
  connected.on('error', (err) => log.warn({ err }, 'mqtt error'));
  connected.on('reconnect', () => log.info('mqtt reconnecting'));
  connected.on('offline', () => log.warn({ acksDropped: stats.acksDropped }, 'mqtt offline'));
  const topics = INGEST_TOPICS.map((t) => (opts.sharedGroup ? `$share/${opts.sharedGroup}/${t}` : t));
  await connected.subscribeAsync(topics, { qos: 1 });
  log.info({ topics, clientId: opts.clientId }, 'subscribed');
}

/** Takes no new message, waits for every hand-off and PUBACK in flight, then disconnects (the session stays). */
async function closeSource(s: SourceState, connected: MqttClient): Promise<void> {
  s.closing = true;
  while (s.inFlight.size > 0) await Promise.all([...s.inFlight]);
  await sleep(0); // let the last PUBACKs reach the socket
  await connected.endAsync(false);
}

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
  const h: HandOffSettings = {
    handler,
    log: opts.log,
    maxInFlight: opts.maxInFlight ?? 1024,
    maxAttempts: opts.maxAttempts ?? 5,
    isTransient: opts.isTransient ?? (() => false),
    giveUp: opts.giveUp,
  };
  const s: SourceState = {
    stats: { acksSent: 0, acksDropped: 0, givenUp: 0, inFlight: 0 },
    closing: false,
    overCap: false,
    client: undefined,
    inFlight: new Set(),
    handOffs: 0,
    chains: new WeakMap(),
  };

  // Handlers go in before the CONNACK: the session's queued messages may arrive with it.
  const prepare = (c: MqttClient): void => {
    s.client = c;
    c.handleMessage = messageHandler(s, h, c);
  };
  const keepalive = opts.keepaliveSeconds ?? 30;
  const connected = await connectMqtt(cfg, { clientId: opts.clientId, clean: false, keepalive }, 10_000, prepare);
  await subscribe(connected, opts, s.stats);

  let closed: Promise<void> | undefined;
  return {
    stats: s.stats,
    close() {
      closed ??= closeSource(s, connected);
      return closed;
    },
  };
}
