import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startMqttSource, type MqttSource } from '../../src/ingest/mqtt-source.js';
import type { AppConfig } from '../../src/shared/config.js';
import { eventually, memoryLogger } from '../helpers/pipeline.js';
import { startMosquitto, type LocalService } from '../helpers/services.js';

/**
 * The ingest's PUBACK contract against a real Mosquitto: a PUBACK leaves only after its message is handed off,
 * only on the connection that received it, in order; a poison message cannot block the others; a slow hand-off
 * does not cost the connection. These also pin what meterflow relies on in MQTT.js: a `handleMessage` callback
 * given an error sends no PUBACK (if MQTT.js changes that, the first test fails: the message is not redelivered).
 */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Messages a fresh connection to the same persistent session is handed (0 = every message was acknowledged). */
async function leftInSession(url: string, clientId: string, waitMs = 1500): Promise<string[]> {
  const got: string[] = [];
  const c = mqtt.connect(url, { clientId, clean: false, protocolVersion: 4, reconnectPeriod: 0 });
  c.handleMessage = (packet, cb) => {
    got.push(packet.payload.toString());
    cb();
  };
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  await sleep(waitMs);
  await c.endAsync();
  return got;
}

describe('ingest MQTT source: PUBACKs bound to their connection', () => {
  let broker: LocalService;
  let pub: MqttClient;
  let source: MqttSource | undefined;
  let cfg: AppConfig['mqtt'];

  beforeAll(async () => {
    broker = await startMosquitto();
    cfg = { url: broker.url, clientId: 'acks', username: undefined, password: undefined, sharedGroup: undefined };
    pub = await mqtt.connectAsync(broker.url, { clientId: 'acks-publisher', clean: true });
  });
  afterEach(async () => {
    broker.resume();
    await source?.close();
    source = undefined;
  });
  afterAll(async () => {
    await pub?.endAsync(true);
    await broker?.destroy();
  });

  it('drops the PUBACK of a message whose connection died during its hand-off; the redelivered copy is acknowledged once', async () => {
    const logs = memoryLogger('info');
    const seen: string[] = [];
    const first = deferred();
    source = await startMqttSource(cfg, { clientId: 'acks-reconnect', log: logs.log, keepaliveSeconds: 1 }, async (_topic, payload) => {
      seen.push(payload.toString());
      if (seen.length === 1) await first.promise; // the first copy is handed off only after its connection is gone
    });
    await pub.publishAsync('meters/M-1/readings', 'A', { qos: 1 });
    expect(await eventually(async () => seen.length === 1, 10_000, 20)).toBe(true);
    // The broker hangs past the keepalive: the client drops the connection and reconnects once it answers again.
    broker.pause();
    expect(await eventually(async () => logs.lines.some((l) => l.includes('mqtt offline')), 15_000, 50)).toBe(true);
    broker.resume();
    expect(await eventually(async () => seen.length === 2, 20_000, 50), logs.lines.join('\n')).toBe(true);
    expect(seen).toEqual(['A', 'A']);
    first.resolve();
    expect(await eventually(async () => source?.stats.acksDropped === 1 && source.stats.acksSent === 1, 5_000, 20)).toBe(true);
    await source.close();
    source = undefined;
    expect(await leftInSession(broker.url, 'acks-reconnect')).toEqual([]);
  }, 60_000);

  it('acknowledges in arrival order and nothing before its hand-off', async () => {
    const { log } = memoryLogger();
    const gates = new Map<string, ReturnType<typeof deferred>>();
    const handled: string[] = [];
    source = await startMqttSource(cfg, { clientId: 'acks-order', log }, async (_t, payload) => {
      const g = deferred();
      gates.set(payload.toString(), g);
      await g.promise;
      handled.push(payload.toString());
    });
    for (const p of ['1', '2', '3']) await pub.publishAsync('meters/M-1/readings', p, { qos: 1 });
    expect(await eventually(async () => gates.size === 3, 10_000, 20)).toBe(true);
    // 3 and 2 are handed off first: no PUBACK may leave before 1's.
    gates.get('3')?.resolve();
    gates.get('2')?.resolve();
    await sleep(200);
    expect(source.stats.acksSent).toBe(0);
    gates.get('1')?.resolve();
    expect(await eventually(async () => source?.stats.acksSent === 3, 5_000, 20)).toBe(true);
    expect(handled).toEqual(['3', '2', '1']);
  }, 30_000);

  it('dead-letters a message no hand-off can handle after maxAttempts, and acknowledges every other one', async () => {
    const { log } = memoryLogger('error');
    const handled: string[] = [];
    const givenUp: Array<{ payload: string; err: string }> = [];
    source = await startMqttSource(
      cfg,
      {
        clientId: 'acks-poison',
        log,
        maxAttempts: 3,
        giveUp: async (_t, payload, err) => {
          givenUp.push({ payload: payload.toString(), err: err instanceof Error ? err.message : String(err) });
        },
      },
      async (_t, payload) => {
        if (payload.toString() === 'poison') throw new RangeError('Maximum call stack size exceeded');
        handled.push(payload.toString());
      },
    );
    await pub.publishAsync('meters/M-1/readings', 'poison', { qos: 1 });
    for (let i = 0; i < 50; i++) await pub.publishAsync('meters/M-1/readings', `good-${i}`, { qos: 1 });
    expect(await eventually(async () => source?.stats.acksSent === 51, 15_000, 20)).toBe(true);
    expect(handled).toHaveLength(50);
    expect(givenUp).toEqual([{ payload: 'poison', err: 'Maximum call stack size exceeded' }]);
    expect(source.stats.givenUp).toBe(1);
    await source.close();
    source = undefined;
    expect(await leftInSession(broker.url, 'acks-poison')).toEqual([]);
  }, 30_000);

  it('retries transient failures without limit instead of dead-lettering them', async () => {
    const { log } = memoryLogger('error');
    let failures = 0;
    const givenUp: string[] = [];
    source = await startMqttSource(
      cfg,
      {
        clientId: 'acks-transient',
        log,
        maxAttempts: 2,
        isTransient: (err) => err instanceof Error && err.message.startsWith('LOADING'),
        giveUp: async (_t, payload) => {
          givenUp.push(payload.toString());
        },
      },
      async () => {
        if (failures++ < 6) throw new Error('LOADING Redis is loading the dataset in memory');
      },
    );
    await pub.publishAsync('meters/M-1/readings', 'x', { qos: 1 });
    expect(await eventually(async () => source?.stats.acksSent === 1, 20_000, 20)).toBe(true);
    expect(givenUp).toEqual([]);
    expect(failures).toBe(7);
  }, 30_000);

  it('keeps its connection while hand-offs stall longer than the keepalive (backpressure through held PUBACKs)', async () => {
    const logs = memoryLogger('info');
    let handled = 0;
    source = await startMqttSource(cfg, { clientId: 'acks-stall', log: logs.log, keepaliveSeconds: 1, maxInFlight: 4 }, async () => {
      await sleep(4000); // e.g. InfluxDB lagging: the ingest waits for its writer to drain
      handled++;
    });
    for (let i = 0; i < 10; i++) pub.publish('meters/M-1/readings', `m-${i}`, { qos: 1 });
    expect(
      await eventually(async () => handled === 10 && source?.stats.acksSent === 10, 30_000, 50),
      `${handled} ${JSON.stringify(source.stats)}\n${logs.lines.join('\n')}`,
    ).toBe(true);
    expect(logs.lines.filter((l) => l.includes('mqtt offline') || l.includes('reconnecting'))).toEqual([]);
    expect(source.stats.holds).toBeGreaterThan(0); // the loop was held across 4 s stalls with a 1 s keepalive
  }, 45_000);

  it('holds its hand-offs in flight at its own cap whatever the broker sends, and loses nothing', async () => {
    // The broker here has max_inflight_messages 100, which Mosquitto 2.0 does not keep to for a subscriber that
    // acknowledges as it goes: the ingest's own cap is what bounds its memory and a reconnect's redelivery.
    const logs = memoryLogger('info');
    const cap = 50;
    let running = 0;
    let most = 0;
    const seen = new Set<string>();
    source = await startMqttSource(cfg, { clientId: 'acks-cap', log: logs.log, maxInFlight: cap, maxInFlightBytes: 1 << 20 }, async (_t, payload) => {
      running++;
      most = Math.max(most, running);
      await sleep(1 + (seen.size % 5));
      seen.add(payload.toString());
      running--;
    });
    const n = 3000;
    const body = 'x'.repeat(2000);
    await Promise.all(Array.from({ length: n }, (_, i) => pub.publishAsync(`meters/M-${i % 50}/readings`, `${i}:${body}`, { qos: 1 })));
    expect(await eventually(async () => source?.stats.acksSent === n, 60_000, 50), JSON.stringify(source.stats)).toBe(true);
    expect(seen.size).toBe(n);
    expect(most).toBeLessThanOrEqual(cap);
    expect(source.stats.holds).toBeGreaterThan(0);
    expect(source.stats.acksDropped).toBe(0);
    expect(logs.lines.filter((l) => l.includes('mqtt offline'))).toEqual([]);
    await source.close();
    source = undefined;
    expect(await leftInSession(broker.url, 'acks-cap')).toEqual([]);
  }, 90_000);

  it('holds at the byte cap too (a few large batches)', async () => {
    const logs = memoryLogger('info');
    let bytes = 0;
    let most = 0;
    let handled = 0;
    source = await startMqttSource(cfg, { clientId: 'acks-bytes', log: logs.log, maxInFlight: 1000, maxInFlightBytes: 256 * 1024 }, async (_t, payload) => {
      bytes += payload.length;
      most = Math.max(most, bytes);
      await sleep(5);
      bytes -= payload.length;
      handled++;
    });
    const big = 'y'.repeat(64 * 1024);
    await Promise.all(Array.from({ length: 40 }, () => pub.publishAsync('concentrators/C-1/readings', big, { qos: 1 })));
    expect(await eventually(async () => handled === 40 && source?.stats.acksSent === 40, 30_000, 20)).toBe(true);
    // Held once the bytes in flight reach the cap: at most the cap plus the message that reached it.
    expect(most).toBeLessThanOrEqual(256 * 1024 + big.length);
    expect(source.stats.holds).toBeGreaterThan(0);
  }, 45_000);
});
