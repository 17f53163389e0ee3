import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MeterEvent } from '../../src/contracts/reading.js';
import { startIngest, type IngestHandle } from '../../src/ingest/main.js';
import { keys } from '../../src/shared/redis.js';
import { dlqReasons, eventually, memoryLogger, roleContext, serviceEnv, streamReadings, type TestServices } from '../helpers/pipeline.js';
import { freePort, startInflux, startMosquitto, startRedis } from '../helpers/services.js';

/**
 * The broker as deploy/ sets it up for meters: TLS only (a password listener and a client-certificate listener),
 * no anonymous access, the repo's real ACL (deploy/mosquitto/acl), a CA, server and client certificates made by
 * the deploy scripts (deploy/make-secrets.sh, deploy/make-client-cert.sh, openssl) in a temp dir. The ingest role
 * connects over TLS as the deployment configures it (MQTT_URL mqtts://, MQTT_CA_FILE, MQTT_CERT_FILE/MQTT_KEY_FILE).
 */

const ROOT = new URL('../../', import.meta.url).pathname;
const DEPLOY = join(ROOT, 'deploy');
const SHARDS = 2;
const Q = 900_000;
const T0 = Math.floor(Date.now() / Q) * Q - 2 * 86_400_000; // two days ago, on a 15-min boundary

function sh(script: string, args: string[], env: Record<string, string>): string {
  const r = spawnSync('sh', [join(DEPLOY, script), ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${script} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

const reading = (meterId: string, k: number): string => JSON.stringify({ meterId, ts: T0 + k * Q, importWh: 500_000 + k * 200, exportWh: 0 });

/** Stream entries that are meter events (field `e`). */
async function streamEvents(redis: Redis): Promise<MeterEvent[]> {
  const out: MeterEvent[] = [];
  for (let s = 0; s < SHARDS; s++) {
    for (const [, f] of await redis.xrange(keys.readings(s), '-', '+')) {
      const i = f.indexOf('e');
      if (i >= 0) out.push(...(JSON.parse(f[i + 1] ?? '[]') as MeterEvent[]));
    }
  }
  return out;
}

describe('MQTT over TLS with the deployed ACL', () => {
  let dir: string;
  let secrets: string;
  let rogue: string;
  let certs: string;
  let s: TestServices;
  let redis: Redis;
  let tlsPort: number;
  let certPort: number;
  const clients: MqttClient[] = [];
  const passwords: Record<string, string> = {
    'M-1': 'pw-m1',
    'M-2': 'pw-m2',
    'CONC-7': 'pw-c7',
    'ingest@meterflow': 'pw-ingest',
    'headend@meterflow': 'pw-headend',
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mf-mqtt-tls-'));
    secrets = join(dir, 'secrets');
    rogue = join(dir, 'rogue');
    certs = join(dir, 'certs');
    // The deployment's CA and broker certificate (localhost, 127.0.0.1), and an unrelated CA with the same names.
    sh('make-secrets.sh', [], { SECRETS_DIR: secrets, MQTT_TLS_NAMES: 'DNS:localhost,IP:127.0.0.1' });
    sh('make-secrets.sh', [], { SECRETS_DIR: rogue, MQTT_TLS_NAMES: 'DNS:localhost,IP:127.0.0.1' });
    for (const id of ['ingest@meterflow', 'M-1']) sh('make-client-cert.sh', [id, certs], { SECRETS_DIR: secrets });
    sh('make-client-cert.sh', ['M-2', join(dir, 'rogue-certs')], { SECRETS_DIR: rogue });
    const passwd = join(dir, 'passwd');
    writeFileSync(
      passwd,
      `${Object.entries(passwords)
        .map(([u, p]) => `${u}:${p}`)
        .join('\n')}\n`,
    );
    const hashed = spawnSync('mosquitto_passwd', ['-U', passwd], { encoding: 'utf8' });
    expect(hashed.status, hashed.stderr).toBe(0);

    certPort = await freePort();
    const tls = [`cafile ${secrets}/mqtt_ca_cert`, `certfile ${secrets}/mqtt_server_cert`, `keyfile ${secrets}/mqtt_server_key`, 'tls_version tlsv1.2'];
    const mosquitto = await startMosquitto({
      conf: [
        // The helper's own listener comes first in the file: these lines make it the TLS + password listener,
        // so the broker has no plain-text port at all.
        ...tls,
        'allow_anonymous false',
        `password_file ${passwd}`,
        `acl_file ${join(DEPLOY, 'mosquitto', 'acl')}`,
        `listener ${certPort} 127.0.0.1`,
        ...tls,
        'require_certificate true',
        'use_identity_as_username true',
      ],
    });
    tlsPort = mosquitto.port;
    const [r, i] = await Promise.all([startRedis(), startInflux()]);
    s = { redis: r, mqtt: mosquitto, influx: i };
    redis = new Redis(r.url);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    redis?.disconnect();
    await Promise.all([s?.redis.destroy(), s?.mqtt.destroy(), s?.influx?.destroy()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const caOf = (d: string): Buffer => readFileSync(join(d, 'mqtt_ca_cert'));

  /** An MQTT 5 client (so a refused publish comes back as PUBACK "Not authorized"), without reconnects. */
  async function connect(url: string, opts: Partial<IClientOptions>): Promise<MqttClient> {
    const c = await mqtt.connectAsync(url, {
      protocolVersion: 5,
      clientId: `t-${Math.random().toString(16).slice(2, 10)}`,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ...opts,
    });
    clients.push(c);
    return c;
  }
  const asUser = (user: string, extra: Partial<IClientOptions> = {}): Promise<MqttClient> =>
    connect(`mqtts://127.0.0.1:${tlsPort}`, { username: user, password: passwords[user] ?? '', ca: caOf(secrets), ...extra });

  /** The ingest role, configured through the environment exactly as deployed. */
  async function ingestWith(env: Record<string, string>): Promise<IngestHandle> {
    const { ctx } = roleContext(serviceEnv(s, { STREAM_SHARDS: String(SHARDS), ...env }), memoryLogger().log);
    return startIngest(ctx);
  }

  it('ingests a reading published over TLS: ingest with username and password, the meter with its password', async () => {
    await redis.flushall();
    const ingest = await ingestWith({
      MF_INSTANCE: 'tls-pw',
      MQTT_URL: `mqtts://127.0.0.1:${tlsPort}`,
      MQTT_CA_FILE: join(secrets, 'mqtt_ca_cert'),
      MQTT_USERNAME: 'ingest@meterflow',
      MQTT_PASSWORD: passwords['ingest@meterflow'] ?? '',
    });
    try {
      const meter = await asUser('M-1');
      await meter.publishAsync('meters/M-1/readings', reading('M-1', 0), { qos: 1 });
      expect(await eventually(async () => ingest.ingestor.totals.readings === 1, 10_000)).toBe(true);
      expect((await streamReadings(redis, SHARDS)).map((r) => [r.meterId, r.ts, r.importWh])).toEqual([['M-1', T0, 500_000]]);
    } finally {
      await ingest.close();
    }
  });

  it('ingests a reading published over TLS: ingest and meter authenticated by client certificate (CN = username)', async () => {
    await redis.flushall();
    const ingest = await ingestWith({
      MF_INSTANCE: 'tls-cert',
      MQTT_URL: `mqtts://localhost:${certPort}`,
      MQTT_CA_FILE: join(secrets, 'mqtt_ca_cert'),
      MQTT_CERT_FILE: join(certs, 'ingest@meterflow.crt'),
      MQTT_KEY_FILE: join(certs, 'ingest@meterflow.key'),
    });
    try {
      const meter = await connect(`mqtts://localhost:${certPort}`, {
        ca: caOf(secrets),
        cert: readFileSync(join(certs, 'M-1.crt')),
        key: readFileSync(join(certs, 'M-1.key')),
      });
      await meter.publishAsync('meters/M-1/readings', reading('M-1', 1), { qos: 1 });
      // The certificate's CN is the username the ACL sees: M-1 may not publish as M-2 here either.
      await expect(meter.publishAsync('meters/M-2/readings', reading('M-2', 1), { qos: 1 })).rejects.toThrow('Not authorized');
      expect(await eventually(async () => ingest.ingestor.totals.readings === 1, 10_000)).toBe(true);
      expect((await streamReadings(redis, SHARDS)).map((r) => [r.meterId, r.ts])).toEqual([['M-1', T0 + Q]]);
    } finally {
      await ingest.close();
    }
  });

  it('refuses plain text, an untrusted broker certificate, an untrusted or missing client certificate and a wrong password', async () => {
    const plain = `mqtt://127.0.0.1:${tlsPort}`;
    await expect(connect(plain, { username: 'M-1', password: passwords['M-1'] ?? '', connectTimeout: 2000 })).rejects.toThrow();
    // A client that trusts another CA does not talk to this broker (no password leaves it).
    await expect(asUser('M-1', { ca: caOf(rogue) })).rejects.toThrow(/self[- ]signed|unable to verify|certificate/i);
    // ... and the ingest fails at start saying why, instead of retrying for ever.
    await expect(
      ingestWith({
        MF_INSTANCE: 'tls-rogue',
        MQTT_URL: `mqtts://127.0.0.1:${tlsPort}`,
        MQTT_CA_FILE: join(rogue, 'mqtt_ca_cert'),
        MQTT_USERNAME: 'ingest@meterflow',
        MQTT_PASSWORD: passwords['ingest@meterflow'] ?? '',
      }),
    ).rejects.toThrow("TLS: the broker's certificate is not trusted");
    await expect(asUser('M-1', { password: 'wrong' })).rejects.toThrow(/Bad User Name or Password|Not authorized/);
    await expect(
      ingestWith({
        MF_INSTANCE: 'tls-badpw',
        MQTT_URL: `mqtts://127.0.0.1:${tlsPort}`,
        MQTT_CA_FILE: join(secrets, 'mqtt_ca_cert'),
        MQTT_USERNAME: 'ingest@meterflow',
        MQTT_PASSWORD: 'wrong',
      }),
    ).rejects.toThrow('the broker refused the credentials');
    const certUrl = `mqtts://localhost:${certPort}`;
    const rogueCert = { cert: readFileSync(join(dir, 'rogue-certs', 'M-2.crt')), key: readFileSync(join(dir, 'rogue-certs', 'M-2.key')) };
    await expect(connect(certUrl, { ca: caOf(secrets), ...rogueCert, connectTimeout: 3000 })).rejects.toThrow();
    // No certificate at all: a password is no way in on the certificate listener.
    await expect(connect(certUrl, { ca: caOf(secrets), username: 'M-1', password: passwords['M-1'] ?? '', connectTimeout: 3000 })).rejects.toThrow();
  });

  it('per-device ACL: a meter cannot publish as another meter, a concentrator only on its own topic, exchanges only from the head end', async () => {
    await redis.flushall();
    const ingest = await ingestWith({
      MF_INSTANCE: 'tls-acl',
      MQTT_URL: `mqtts://127.0.0.1:${tlsPort}`,
      MQTT_CA_FILE: join(secrets, 'mqtt_ca_cert'),
      MQTT_USERNAME: 'ingest@meterflow',
      MQTT_PASSWORD: passwords['ingest@meterflow'] ?? '',
    });
    try {
      const m1 = await asUser('M-1');
      const conc = await asUser('CONC-7');
      const headend = await asUser('headend@meterflow');
      const denied = (c: MqttClient, topic: string, payload: string): Promise<void> =>
        expect(c.publishAsync(topic, payload, { qos: 1 })).rejects.toThrow('Not authorized');

      await denied(m1, 'meters/M-2/readings', reading('M-2', 0));
      await denied(m1, 'meters/M-2/events', JSON.stringify({ meterId: 'M-2', ts: T0, event: 'lastGasp' }));
      await denied(m1, 'concentrators/CONC-7/readings', `[${reading('M-2', 0)}]`);
      await denied(conc, 'concentrators/CONC-8/readings', `[${reading('M-2', 1)}]`);
      await denied(conc, 'meters/M-2/readings', reading('M-2', 2));
      const order = { meterId: 'M-1', ts: T0 + 2 * Q, event: 'meterExchange', installWh: 10, removalWh: 500_400, installExportWh: 0 };
      await denied(m1, 'headend/meters/M-1/exchange', JSON.stringify(order));
      await denied(conc, 'headend/meters/M-1/exchange', JSON.stringify(order));

      await m1.publishAsync('meters/M-1/readings', reading('M-1', 0), { qos: 1 });
      await conc.publishAsync('concentrators/CONC-7/readings', `[${reading('M-5', 0)},${reading('M-6', 0)}]`, { qos: 1 });
      // The meter's own events topic is open to it, but a work order there is dead-lettered, not believed.
      await m1.publishAsync('meters/M-1/events', JSON.stringify({ ...order, installWh: 0, removalWh: 99_999_999 }), { qos: 1 });
      await headend.publishAsync('headend/meters/M-1/exchange', JSON.stringify(order), { qos: 1 });

      // Exactly the 4 allowed messages reached the ingest: nothing refused by the ACL was delivered.
      expect(
        await eventually(
          async () => ingest.ingestor.totals.readings === 3 && ingest.ingestor.totals.events === 1 && (await dlqReasons(redis)).length === 1,
          10_000,
        ),
      ).toBe(true);
      await new Promise((r) => setTimeout(r, 300));
      expect(ingest.ingestor.totals).toMatchObject({ messages: 4, readings: 3, events: 1, rejected: 1, byReason: { exchange_not_from_headend: 1 } });
      expect((await streamReadings(redis, SHARDS)).map((r) => r.meterId).sort()).toEqual(['M-1', 'M-5', 'M-6']);
      expect(await dlqReasons(redis)).toEqual(['exchange_not_from_headend']);
      expect(await streamEvents(redis)).toEqual([order]);
    } finally {
      await ingest.close();
    }
  });

  it('deduplicates a reading replayed later with its old timestamp (same bytes, after newer readings)', async () => {
    // Batches and back-to-back repeats are covered in tests/integration/ingest.test.ts; here the copy comes back
    // after the meter moved on, as a captured message replayed by someone holding the meter's credentials would.
    await redis.flushall();
    const ingest = await ingestWith({
      MF_INSTANCE: 'tls-replay',
      MQTT_URL: `mqtts://127.0.0.1:${tlsPort}`,
      MQTT_CA_FILE: join(secrets, 'mqtt_ca_cert'),
      MQTT_USERNAME: 'ingest@meterflow',
      MQTT_PASSWORD: passwords['ingest@meterflow'] ?? '',
    });
    try {
      const m2 = await asUser('M-2');
      const captured = reading('M-2', 3);
      for (let k = 3; k < 11; k++) await m2.publishAsync('meters/M-2/readings', reading('M-2', k), { qos: 1 });
      expect(await eventually(async () => ingest.ingestor.totals.readings === 8, 10_000)).toBe(true);
      await m2.publishAsync('meters/M-2/readings', captured, { qos: 1 });
      await m2.publishAsync('meters/M-2/readings', `[${captured},${reading('M-2', 11)}]`, { qos: 1 });
      // Readings and duplicates are counted when a hand-off ends (messages when it starts): wait for all 11.
      expect(await eventually(async () => ingest.ingestor.totals.readings + ingest.ingestor.totals.duplicates >= 11, 10_000)).toBe(true);
      expect(ingest.ingestor.totals).toMatchObject({ readings: 9, duplicates: 2, rejected: 0 });
      const stored = await streamReadings(redis, SHARDS);
      expect(stored.filter((r) => r.ts === T0 + 3 * Q)).toHaveLength(1);
      expect(stored).toHaveLength(9);
    } finally {
      await ingest.close();
    }
  });
});
