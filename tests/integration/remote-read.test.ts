import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { Compile } from 'typebox/compile';
import { buildApp, type ApiApp } from '../../src/api/app.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import { CustomerRecord } from '../../src/contracts/registry.js';
import { loadConfig, loadSection } from '../../src/shared/config.js';
import { createInflux } from '../../src/shared/influx.js';
import { createLogger } from '../../src/shared/logger.js';
import { createMetrics } from '../../src/shared/metrics.js';
import { closeRedis, createRedis } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { freePort, startMosquitto, startRedis, type LocalService } from '../helpers/services.js';

const checkCustomer = Compile(CustomerRecord);
const TOKEN = 'meters-command-token';
const READER = 'billing-only-token';

/** How the test meter answers a command on meters/{id}/commands. */
type Behaviour = 'answer' | 'silent' | 'late' | 'garbage' | 'wrongMeter' | 'wrongTopic' | 'error';
const behaviour: Record<string, Behaviour> = {
  'RR-1': 'answer',
  'RR-SILENT': 'silent',
  'RR-LATE': 'late',
  'RR-BAD': 'garbage',
  'RR-WRONG': 'wrongMeter',
  'RR-TOPIC': 'wrongTopic',
  'RR-ERR': 'error',
};
for (let i = 0; i < 20; i++) behaviour[`RR-P${i}`] = 'answer';

const registerOf = (meterId: string): number => 1000 + [...meterId].reduce((s, c) => s + c.charCodeAt(0), 0);

describe('remote read over MQTT', () => {
  let redisSrv: LocalService;
  let broker: LocalService;
  let redis: Redis;
  let app: ApiApp;
  let meter: MqttClient;
  let ingestSpy: MqttClient;
  const ingested: Array<{ topic: string; body: unknown }> = [];
  const commands: unknown[] = [];
  const log = createLogger({ level: 'silent' });
  const post = (id: string, q?: { timeoutMs: number }, token = TOKEN) =>
    app.inject({
      method: 'POST',
      url: `/api/v1/meters/${id}/remote-read${q ? `?timeoutMs=${q.timeoutMs}` : ''}`,
      headers: { authorization: `Bearer ${token}` },
    });

  beforeAll(async () => {
    [redisSrv, broker] = await Promise.all([startRedis(), startMosquitto()]);
    const config = loadConfig({
      REDIS_URL: redisSrv.url,
      MQTT_URL: broker.url,
      INFLUX_API: 'v1',
      INFLUX_URL: `http://127.0.0.1:${await freePort()}`,
      API_TOKENS: JSON.stringify({ [TOKEN]: ['meters:command'], [READER]: ['billing:read'] }),
    });
    redis = createRedis(config.redis.url, 'test');
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    const records = Object.keys(behaviour).map((meterId): unknown => ({
      meterId,
      customerId: `C-${meterId}`,
      class: 'residential',
      tariff: 'default',
      contractKw: 5,
      feederId: 'F',
      transformerId: 'T',
      hasPv: false,
      intervalMinutes: 15,
    }));
    await registry.upsertMeters(records.filter((r) => checkCustomer.Check(r)));

    // The meter side: a small real MQTT client that answers commands as its behaviour says.
    meter = await mqtt.connectAsync(broker.url, { clientId: 'test-meter' });
    await meter.subscribeAsync('meters/+/commands', { qos: 1 });
    meter.on('message', (topic, payload) => {
      const id = topic.split('/')[1] ?? '';
      const cmd: unknown = JSON.parse(payload.toString());
      commands.push(cmd);
      const requestId = cmd !== null && typeof cmd === 'object' && 'requestId' in cmd ? cmd.requestId : undefined;
      const reading = { meterId: id, ts: '2026-03-05T10:15:00Z', seq: 7, importWh: registerOf(id), exportWh: 0, powerW: 812.5, voltageV: 231.2 };
      const reply = (t: string, body: object) => void meter.publishAsync(t, JSON.stringify(body), { qos: 1 });
      switch (behaviour[id]) {
        case 'answer':
          return reply(`meters/${id}/responses`, { ...reading, requestId });
        case 'late':
          return void setTimeout(() => reply(`meters/${id}/responses`, { ...reading, requestId }), 1500);
        case 'garbage':
          return reply(`meters/${id}/responses`, { requestId, importWh: -5 });
        case 'wrongMeter':
          return reply(`meters/${id}/responses`, { ...reading, meterId: 'RR-1', requestId });
        case 'wrongTopic':
          return reply('meters/RR-1/responses', { ...reading, requestId });
        case 'error':
          return reply(`meters/${id}/responses`, { requestId, error: 'optical port busy' });
        default:
          return undefined;
      }
    });
    // What ingest would see.
    ingestSpy = await mqtt.connectAsync(broker.url, { clientId: 'test-ingest' });
    await ingestSpy.subscribeAsync('meters/+/readings', { qos: 1 });
    ingestSpy.on('message', (topic, payload) => ingested.push({ topic, body: JSON.parse(payload.toString()) }));

    const influx = await createInflux(config.influx, log);
    app = await buildApp({ config, log, metrics: createMetrics(), redis, influx, registry }, { docs: false });
    await app.ready();
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await meter?.endAsync();
    await ingestSpy?.endAsync();
    if (redis) await closeRedis(redis);
    await Promise.all([redisSrv?.destroy(), broker?.destroy()]);
  });

  const waitFor = async (cond: () => boolean, ms = 3000): Promise<void> => {
    const end = Date.now() + ms;
    while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  };

  it('reads the meter, returns the reading and hands it to ingest', async () => {
    const res = await post('RR-1');
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.reading).toEqual({
      meterId: 'RR-1',
      ts: '2026-03-05T10:15:00.000Z',
      seq: 7,
      importWh: registerOf('RR-1'),
      exportWh: 0,
      powerW: 812.5,
      voltageV: 231.2,
    });
    expect(body.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(commands).toContainEqual({ cmd: 'read', requestId: body.requestId });
    await waitFor(() => ingested.some((m) => m.topic === 'meters/RR-1/readings'));
    // Republished as a plain reading (no requestId), exactly as the meter sent it.
    expect(ingested.filter((m) => m.topic === 'meters/RR-1/readings').map((m) => m.body)).toEqual([
      { meterId: 'RR-1', ts: '2026-03-05T10:15:00Z', seq: 7, importWh: registerOf('RR-1'), exportWh: 0, powerW: 812.5, voltageV: 231.2 },
    ]);
  });

  it('answers 404 for a meter not in the registry, without sending a command', async () => {
    const before = commands.length;
    const res = await post('NOPE-1');
    expect([res.statusCode, res.json().message]).toEqual([404, 'meter NOPE-1 is not in the registry']);
    expect(commands.length).toBe(before);
  });

  it('answers 504 when the meter stays silent', async () => {
    const t0 = Date.now();
    const res = await post('RR-SILENT', { timeoutMs: 400 });
    const took = Date.now() - t0;
    expect([res.statusCode, res.json().message]).toEqual([504, 'meter RR-SILENT did not answer within 400 ms']);
    expect(took).toBeGreaterThanOrEqual(400);
    expect(took).toBeLessThan(2000);
  });

  it('waits up to the configured timeout (10 s) by default', async () => {
    const res = await post('RR-LATE');
    expect(res.statusCode).toBe(200);
    expect(res.json().latencyMs).toBeGreaterThanOrEqual(1500);
    // A shorter wait than the answer takes is a timeout.
    expect((await post('RR-LATE', { timeoutMs: 500 })).statusCode).toBe(504);
    // The configured timeout is the ceiling.
    expect((await post('RR-LATE', { timeoutMs: 10_001 })).statusCode).toBe(400);
  });

  it.each([
    ['RR-BAD', 502, 'meter RR-BAD answered with an invalid reading'],
    ['RR-WRONG', 502, 'meter RR-WRONG answered with an invalid reading'],
    ['RR-ERR', 502, 'meter RR-ERR could not be read: optical port busy'],
  ])('%s: a bad answer is 502', async (id, status, message) => {
    const res = await post(id, { timeoutMs: 2000 });
    expect([res.statusCode, res.json().message]).toEqual([status, message]);
    expect(ingested.some((m) => m.topic === `meters/${id}/readings`)).toBe(false);
  });

  it("ignores an answer on another meter's topic", async () => {
    expect((await post('RR-TOPIC', { timeoutMs: 500 })).statusCode).toBe(504);
  });

  it('keeps concurrent requests apart', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `RR-P${i}`);
    const results = await Promise.all(ids.map((id) => post(id, { timeoutMs: 5000 })));
    expect(results.map((r) => r.statusCode)).toEqual(ids.map(() => 200));
    expect(results.map((r) => r.json().reading.importWh)).toEqual(ids.map(registerOf));
  });

  it('needs the meters:command scope', async () => {
    expect((await post('RR-1', undefined, READER)).statusCode).toBe(403);
    expect((await app.inject({ method: 'POST', url: '/api/v1/meters/RR-1/remote-read' })).statusCode).toBe(401);
  });

  it('answers 503 while the broker is down, and works again after it is back', async () => {
    await broker.stop();
    try {
      await waitFor(() => false, 300);
      expect((await post('RR-1', { timeoutMs: 500 })).statusCode).toBe(503);
    } finally {
      await broker.restart();
    }
    let status = 0;
    const end = Date.now() + 15_000;
    while (status !== 200 && Date.now() < end) {
      status = (await post('RR-1', { timeoutMs: 1000 })).statusCode;
      if (status !== 200) await new Promise((r) => setTimeout(r, 200));
    }
    expect(status).toBe(200);
  }, 30_000);
});
