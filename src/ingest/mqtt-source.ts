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
  /** Times the packet loop was held because the hand-offs in flight reached the cap (`maxInFlight`, `maxInFlightBytes`). */
  holds: number;
}

export interface MqttSource {
  readonly stats: MqttSourceStats;
  close(): Promise<void>;
}

export interface MqttSourceOptions {
  clientId: string;
  sharedGroup?: string;
  log: Logger;
  /**
   * Hand-offs in flight (messages, payload bytes) at which the packet loop is held until half of them are done:
   * what bounds the ingest's memory and what a reconnect redelivers, whatever the broker's in-flight window.
   */
  maxInFlight?: number;
  maxInFlightBytes?: number;
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
  /** Payload bytes of the hand-offs in flight. */
  bytes: number;
  /** The held packet loop: called once the hand-offs in flight fell to half the cap. */
  held: (() => void) | undefined;
  /** While held: keeps the connection's keepalive (PINGREQs the loop will read once it runs again). */
  heldPing: NodeJS.Timeout | undefined;
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
  maxInFlightBytes: number;
  keepaliveMs: number;
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

/** Starts a message's hand-off, counted in `stats.inFlight` until it settles; the last to settle may release the loop. */
function startHandOff(s: SourceState, h: HandOffSettings, topic: string, payload: Buffer): Promise<boolean> {
  const work = handOff(s, h, topic, payload);
  s.handOffs++;
  s.bytes += payload.length;
  s.stats.inFlight = s.handOffs;
  void work.finally(() => {
    s.handOffs--;
    s.bytes -= payload.length;
    s.stats.inFlight = s.handOffs;
    if (s.held !== undefined && s.handOffs <= h.maxInFlight / 2 && s.bytes <= h.maxInFlightBytes / 2) release(s);
  });
  track(s, work);
  return work;
}

/**
 * Holds the packet loop (`next` reads the next packet): MQTT.js reads nothing more, TCP fills, and the broker stops
 * sending. The broker's in-flight window cannot be relied on for this: Mosquitto 2.0.11 with max_inflight_messages
 * 100 was measured sending 19,800 unacknowledged QoS 1 messages to a subscriber that acknowledges in order, and
 * the ingest held 100k hand-offs (500 MB) in a backfill, until its connection dropped and the broker redelivered
 * them all. While held, PINGREQs keep the broker's keepalive and MQTT.js' timer is reset: the PINGRESPs wait in
 * the socket until the loop runs, so a stall longer than the keepalive does not cost the connection.
 */
function hold(s: SourceState, h: HandOffSettings, c: MqttClient, next: () => void): void {
  // A loop still held belongs to a connection that is gone (its pump is superseded): let it go.
  if (s.held !== undefined) release(s);
  s.held = next;
  s.stats.holds++;
  const stream = c.stream;
  s.heldPing = setInterval(
    () => {
      if (c.stream !== stream || stream.destroyed || !stream.writable) return;
      stream.write(generate({ cmd: 'pingreq' }));
      c.reschedulePing(true);
    },
    Math.max(100, h.keepaliveMs / 2),
  );
  h.log.debug({ inFlight: s.handOffs, bytes: s.bytes }, 'hand-offs at the cap: packet loop held');
}

function release(s: SourceState): void {
  const next = s.held;
  clearInterval(s.heldPing);
  s.held = undefined;
  s.heldPing = undefined;
  next?.();
}

/** Writes the PUBACK on `stream` only if it is still the live connection; else drops it. */
function puback(s: SourceState, stream: Duplex, messageId: number): void {
  const { client } = s;
  if (client === undefined || client.stream !== stream || !client.connected || stream.destroyed || !stream.writable) {
    s.stats.acksDropped++;
    return;
  }
  // The PUBACKs settled together (one coalesced hand-off) leave in one write. They are control packets the broker
  // counts for the keepalive, which MQTT.js does not see (it would ping every keepalive): reset its timer.
  if (stream.writableCorked === 0) {
    stream.cork();
    process.nextTick(() => {
      stream.uncork();
      if (client.stream === stream) client.reschedulePing();
    });
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

/**
 * `c.handleMessage`: starts the hand-off, chains its PUBACK and calls back at once, so the next packet is read
 * while this one is handed off; only at the in-flight cap is the loop held.
 */
function messageHandler(s: SourceState, h: HandOffSettings, c: MqttClient): MqttClient['handleMessage'] {
  return (packet, callback) => {
    if (s.closing) return callback(ACK_HELD); // unacknowledged: redelivered to the next session
    const stream = c.stream;
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const work = startHandOff(s, h, packet.topic, payload);
    if (packet.qos === 1 && packet.messageId !== undefined) chainPuback(s, h.log, stream, packet.messageId, work);
    const next = (): void => callback(packet.qos === 0 ? undefined : ACK_HELD);
    if (s.handOffs >= h.maxInFlight || s.bytes >= h.maxInFlightBytes) hold(s, h, c, next);
    else next();
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
  release(s); // the loop reads on only to call back ACK_HELD: what it reads is redelivered to the next session
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
 * The packet loop runs on while messages are handed off, until `maxInFlight` messages or `maxInFlightBytes` of
 * payload are in flight; then it is held until half of them are done, and TCP stops the broker (`hold`). That cap
 * is what bounds the ingest's memory and what a reconnect redelivers. PUBACKs count for the broker's keepalive, so
 * MQTT.js' ping timer is reset when they go out, and a held loop sends its own PINGREQs: a slow hand-off (Redis
 * away) does not cost the connection.
 *
 * A hand-off that fails is retried with backoff; transient errors (`isTransient`) without limit, anything else
 * `maxAttempts` times, after which the message goes to `giveUp` (a dead letter) and is acknowledged, so one
 * poison message cannot block every later PUBACK.
 */
export async function startMqttSource(cfg: AppConfig['mqtt'], opts: MqttSourceOptions, handler: MessageHandler): Promise<MqttSource> {
  const h: HandOffSettings = {
    handler,
    log: opts.log,
    maxInFlight: opts.maxInFlight ?? 1000,
    maxInFlightBytes: opts.maxInFlightBytes ?? 64 * 1024 * 1024,
    keepaliveMs: (opts.keepaliveSeconds ?? 30) * 1000,
    maxAttempts: opts.maxAttempts ?? 5,
    isTransient: opts.isTransient ?? (() => false),
    giveUp: opts.giveUp,
  };
  const s: SourceState = {
    stats: { acksSent: 0, acksDropped: 0, givenUp: 0, inFlight: 0, holds: 0 },
    closing: false,
    bytes: 0,
    held: undefined,
    heldPing: undefined,
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
  const connected = await connectMqtt(cfg, { clientId: opts.clientId, clean: false, keepalive: h.keepaliveMs / 1000 }, 10_000, prepare);
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
