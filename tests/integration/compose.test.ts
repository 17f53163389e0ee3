import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { verifyToken } from '../../src/shared/api-tokens.js';
import { parseTokens } from '../../src/shared/config-api.js';
import { portAnswers, which } from '../../simulators/services.js';
import { isObject } from '../helpers/grafana-queries.js';
import { freePort } from '../helpers/services.js';

/**
 * docker-compose.yml and what it mounts. There is no Docker engine here, so: the compose file is validated by
 * docker-compose itself, the secrets and password-file scripts run for real, and the Mosquitto config and ACL
 * that compose mounts are loaded into a real mosquitto to prove who may publish and read what.
 */

const ROOT = new URL('../../', import.meta.url).pathname;
const DEPLOY = join(ROOT, 'deploy');
const ROLES = ['ingest', 'stream', 'alerts', 'billing', 'api'] as const;

function dockerCompose(): string {
  const bin = which('docker-compose');
  if (bin === undefined) {
    throw new Error('docker-compose is not installed: run `apt-get install -y docker-compose` (the repo setup script installs it)');
  }
  return bin;
}

/** `docker-compose config` in a clean environment, so the host's variables do not change the result. */
function composeConfig(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(dockerCompose(), ['-f', 'docker-compose.yml', 'config', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' },
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (isObject(v) ? v : {});
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);

describe('docker-compose.yml', () => {
  it('passes `docker-compose config -q`', () => {
    const r = composeConfig(['-q']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  // docker-compose takes ~2 s to start: render the resolved config once for the checks below.
  let resolved: Obj | undefined;
  const rendered = (): Obj => {
    if (resolved === undefined) {
      const r = composeConfig([]);
      expect(r.status, r.stderr).toBe(0);
      const doc: unknown = parseYaml(r.stdout);
      resolved = obj(doc);
    }
    return resolved;
  };

  it('brings the whole stack: broker, Redis, InfluxDB, Grafana, every role and a simulator', () => {
    const services = obj(rendered().services);
    expect(Object.keys(services).sort()).toEqual([
      'admin',
      'alerts',
      'api',
      'billing',
      'grafana',
      'influxdb',
      'ingest',
      'mosquitto',
      'mosquitto-auth',
      'redis',
      'simulate',
      'stream',
    ]);
    // The admin service is for one-off commands (`docker compose run --rm admin customers import …`), not `up`.
    expect(strings(obj(services.admin).profiles)).toEqual(['tools']);
    for (const role of ROLES) {
      const s = obj(services[role]);
      expect(strings(s.command), role).toEqual([role]);
      expect(obj(s.build).context, role).toBe(ROOT.replace(/\/$/, ''));
    }
    const sim = strings(obj(services.simulate).command);
    expect(sim.slice(0, 3)).toEqual(['simulate', '--scenario', 'simulators/scenarios/demo.yaml']);
    expect(sim.slice(sim.indexOf('--mqtt-url'), sim.indexOf('--mqtt-url') + 2)).toEqual(['--mqtt-url', 'mqtts://mosquitto:8883']);
  });

  it('keeps Redis on AOF and initialises InfluxDB 2 with org, bucket meterflow and the token from a secret', () => {
    const services = obj(rendered().services);
    const redis = strings(obj(services.redis).command);
    expect(redis.slice(0, 3)).toEqual(['redis-server', '--appendonly', 'yes']);
    const influx = obj(services.influxdb);
    expect(String(influx.image)).toMatch(/^influxdb:2\./);
    expect(obj(influx.environment)).toMatchObject({
      DOCKER_INFLUXDB_INIT_MODE: 'setup',
      DOCKER_INFLUXDB_INIT_ORG: 'meterflow',
      DOCKER_INFLUXDB_INIT_BUCKET: 'meterflow',
      DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE: '/run/secrets/influx_token',
      DOCKER_INFLUXDB_INIT_PASSWORD_FILE: '/run/secrets/influx_admin_password',
    });
  });

  it('configures the roles with the environment names of DESIGN.md, secrets only through *_FILE', () => {
    const doc = rendered();
    const services = obj(doc.services);
    const declared = Object.keys(obj(doc.secrets));
    for (const role of [...ROLES, 'simulate'] as const) {
      const s = obj(services[role]);
      const env = obj(s.environment);
      const mounted = (Array.isArray(s.secrets) ? s.secrets : []).map((x) => String(obj(x).source));
      for (const name of mounted) expect(declared, `${role} mounts ${name}`).toContain(name);
      for (const [k, v] of Object.entries(env)) {
        // A secret never sits in the environment itself; *_FILE points at a secret this service mounts.
        expect(['MQTT_PASSWORD', 'INFLUX_TOKEN', 'INFLUX_PASSWORD', 'API_TOKENS'], `${role} ${k}`).not.toContain(k);
        if (k.endsWith('_FILE'))
          expect(
            mounted.map((m) => `/run/secrets/${m}`),
            `${role} ${k}`,
          ).toContain(v);
      }
      if (role !== 'simulate') {
        expect(env, role).toMatchObject({
          REDIS_URL: 'redis://redis:6379',
          INFLUX_URL: 'http://influxdb:8086',
          INFLUX_BUCKET: 'meterflow',
          INFLUX_TOKEN_FILE: '/run/secrets/influx_token',
        });
      }
    }
    expect(obj(obj(services.ingest).environment)).toMatchObject({ MQTT_USERNAME: 'ingest@meterflow', MQTT_SHARED_GROUP: 'meterflow' });
    expect(obj(obj(services.api).environment)).toMatchObject({
      MQTT_USERNAME: 'api@meterflow',
      API_HOST: '0.0.0.0',
      API_TOKENS_FILE: '/run/secrets/api_tokens',
    });
    expect(obj(obj(services.simulate).environment)).toMatchObject({ MQTT_USERNAME: 'headend@meterflow' });
    for (const s of ['stream', 'alerts', 'billing']) expect(Object.keys(obj(obj(services[s]).environment)), s).not.toContain('MQTT_USERNAME');
  });

  it('provisions Grafana from ./grafana and feeds the datasource the token from the secret', () => {
    const grafana = obj(obj(rendered().services).grafana);
    expect(String(grafana.image)).toMatch(/^grafana\/grafana-oss:11\./);
    expect(strings(grafana.volumes).join('\n')).toContain('/grafana/provisioning:/etc/grafana/provisioning:ro');
    expect(strings(grafana.entrypoint).join(' ')).toContain('cat /run/secrets/influx_token');
    expect(obj(grafana.environment)).toMatchObject({
      INFLUX_URL: 'http://influxdb:8086',
      INFLUX_BUCKET: 'meterflow',
      GF_SECURITY_ADMIN_PASSWORD__FILE: '/run/secrets/grafana_admin_password',
    });
  });

  it('builds an image that holds what the roles run', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM node:20/m);
    expect(dockerfile).toContain('npm ci --omit=dev');
    expect(dockerfile).toContain('ENTRYPOINT ["meterflow-entrypoint", "node", "/app/bin/meterflow.js"]');
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const needed of ['src', 'bin', 'config', 'simulators', 'package.json', 'package-lock.json', 'deploy/docker-entrypoint.sh']) {
      expect(ignored, needed).not.toContain(needed);
    }
    expect(ignored).toContain('deploy/secrets');
  });
});

describe('deploy scripts', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mf-deploy-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('make-secrets.sh creates every secret once, random, without a newline, and a valid API_TOKENS of scrypt hashes', async () => {
    const secrets = join(dir, 'secrets');
    const run = (): string => {
      const r = spawnSync('sh', [join(DEPLOY, 'make-secrets.sh')], { env: { PATH: process.env.PATH, SECRETS_DIR: secrets }, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout;
    };
    run();
    const names = [
      'influx_admin_password',
      'influx_token',
      'grafana_admin_password',
      'mqtt_ingest_password',
      'mqtt_api_password',
      'mqtt_headend_password',
      'api_tokens',
    ];
    const first = Object.fromEntries(names.map((n) => [n, readFileSync(join(secrets, n), 'utf8')]));
    for (const n of names.filter((x) => x !== 'api_tokens')) expect(first[n], n).toMatch(/^[A-Za-z0-9]{30,}$/);
    expect(new Set(Object.values(first)).size).toBe(names.length);
    const tokens = parseTokens(first.api_tokens);
    expect(tokens.map((t) => [...t.scopes].sort())).toEqual([['billing:read'], ['admin', 'alerts:write', 'billing:read', 'meters:command']]);
    expect(tokens.map((t) => [t.id, t.secret.kind])).toEqual([
      ['billing-system', 'scrypt'],
      ['operator', 'scrypt'],
    ]);
    // The tokens to hand out: only in api_tokens_plain (mode 600), and they match the hashes openssl computed.
    const plain = readFileSync(join(secrets, 'api_tokens_plain'), 'utf8').trim().split('\n');
    expect(statSync(join(secrets, 'api_tokens_plain')).mode & 0o777).toBe(0o600);
    expect(plain.map((l) => l.split(' ')[0])).toEqual(['billing-system', 'operator']);
    for (const [i, t] of tokens.entries()) {
      const token = plain[i]?.split(' ')[1] ?? '';
      expect(first.api_tokens).not.toContain(token);
      if (t.secret.kind !== 'scrypt') throw new Error('expected a hash');
      expect(await verifyToken(token, t.secret.hash)).toBe(true);
      expect(await verifyToken(`${token}x`, t.secret.hash)).toBe(false);
    }
    expect(statSync(secrets).mode & 0o777).toBe(0o700);
    expect(run()).toContain('kept    influx_token');
    expect(readFileSync(join(secrets, 'influx_token'), 'utf8')).toBe(first.influx_token);
  });

  it('docker-entrypoint.sh turns VAR_FILE into VAR and refuses both at once', () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 's3cr3t-token\n');
    const env = (extra: Record<string, string>): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, ...extra });
    const ok = spawnSync('sh', [join(DEPLOY, 'docker-entrypoint.sh'), 'env'], {
      env: env({ INFLUX_TOKEN_FILE: tokenFile, MQTT_URL: 'mqtt://x' }),
      encoding: 'utf8',
    });
    expect(ok.status, ok.stderr).toBe(0);
    const lines = ok.stdout.split('\n');
    expect(lines).toContain('INFLUX_TOKEN=s3cr3t-token');
    expect(lines).toContain('MQTT_URL=mqtt://x');
    expect(lines.filter((l) => l.startsWith('INFLUX_TOKEN_FILE='))).toEqual([]);
    const both = spawnSync('sh', [join(DEPLOY, 'docker-entrypoint.sh'), 'env'], {
      env: env({ INFLUX_TOKEN_FILE: tokenFile, INFLUX_TOKEN: 'x' }),
      encoding: 'utf8',
    });
    expect(both.status).toBe(64);
    expect(both.stderr).toContain('both INFLUX_TOKEN and INFLUX_TOKEN_FILE are set');
    const missing = spawnSync('sh', [join(DEPLOY, 'docker-entrypoint.sh'), 'env'], { env: env({ API_TOKENS_FILE: join(dir, 'nope') }), encoding: 'utf8' });
    expect(missing.status).toBe(64);
  });

  it('make-passwd.sh fails naming a missing secret', () => {
    const r = spawnSync('sh', [join(DEPLOY, 'mosquitto', 'make-passwd.sh')], {
      env: { PATH: process.env.PATH, SECRETS_DIR: join(dir, 'empty'), PASSWD_FILE: join(dir, 'auth', 'passwd'), PASSWD_OWNER: '' },
      encoding: 'utf8',
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('secret mqtt_ingest_password is missing');
  });
});

describe('mosquitto with the deployed config, password file and ACL', () => {
  let dir: string;
  let port: number;
  let broker: ChildProcess | undefined;
  let output = '';
  const passwords: Record<string, string> = {};
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    const bin = which('mosquitto');
    const passwd = which('mosquitto_passwd');
    if (bin === undefined || passwd === undefined) throw new Error('mosquitto is not installed: run `apt-get install -y mosquitto`');
    dir = mkdtempSync(join(tmpdir(), 'mf-mosq-'));
    const secrets = join(dir, 'secrets');
    const made = spawnSync('sh', [join(DEPLOY, 'make-secrets.sh')], { env: { PATH: process.env.PATH, SECRETS_DIR: secrets }, encoding: 'utf8' });
    expect(made.status, made.stderr).toBe(0);
    writeFileSync(join(secrets, 'mqtt_device_credentials'), '# meters and concentrators\nM-1:pw-m1\nM-2:pw-m2\n\nCONC-7:pw-c7\n');
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const built = spawnSync('sh', [join(DEPLOY, 'mosquitto', 'make-passwd.sh')], {
      env: { PATH: process.env.PATH, SECRETS_DIR: secrets, PASSWD_FILE: join(dir, 'auth', 'passwd'), PASSWD_OWNER: `${uid}:${gid}` },
      encoding: 'utf8',
    });
    expect(built.status, built.stderr).toBe(0);
    expect(built.stdout).toContain('wrote 6 accounts');
    for (const [user, file] of [
      ['ingest@meterflow', 'mqtt_ingest_password'],
      ['api@meterflow', 'mqtt_api_password'],
      ['headend@meterflow', 'mqtt_headend_password'],
    ] as const) {
      passwords[user] = readFileSync(join(secrets, file), 'utf8');
    }
    Object.assign(passwords, { 'M-1': 'pw-m1', 'M-2': 'pw-m2', 'CONC-7': 'pw-c7' });

    // The compose config with only the paths and the ports changed; the ACL file is the deployed one, the TLS
    // listeners use the CA and server certificate make-secrets.sh created.
    port = await freePort();
    const [tlsPort, certPort] = [await freePort(), await freePort()];
    const conf = readFileSync(join(DEPLOY, 'mosquitto', 'mosquitto.conf'), 'utf8')
      .replace(/^listener 1883$/m, `listener ${port} 127.0.0.1`)
      .replace(/^listener 8883$/m, `listener ${tlsPort} 127.0.0.1`)
      .replace(/^listener 8884$/m, `listener ${certPort} 127.0.0.1`)
      .replaceAll('/run/secrets/', `${secrets}/`)
      .replace(/^password_file .*$/m, `password_file ${join(dir, 'auth', 'passwd')}`)
      .replace(/^acl_file .*$/m, `acl_file ${join(DEPLOY, 'mosquitto', 'acl')}`)
      .replace(/^persistence_location .*$/m, `persistence_location ${dir}/`);
    expect(conf).toContain(`listener ${port} 127.0.0.1`);
    // As root, mosquitto would switch to its own user, which cannot read our 0600 password file.
    writeFileSync(join(dir, 'mosquitto.conf'), uid === 0 ? `user root\n${conf}` : conf);
    broker = spawn(bin, ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    broker.stdout?.on('data', (b: Buffer) => (output += b.toString()));
    broker.stderr?.on('data', (b: Buffer) => (output += b.toString()));
    const deadline = Date.now() + 10_000;
    while (!(await portAnswers('127.0.0.1', port))) {
      if (broker.exitCode !== null || Date.now() > deadline) throw new Error(`mosquitto did not start: ${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    if (broker && broker.exitCode === null) {
      const exited = new Promise((r) => broker?.once('exit', r));
      broker.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  async function connect(username: string | undefined, password?: string): Promise<MqttClient> {
    const c = await connectAsync(`mqtt://127.0.0.1:${port}`, {
      protocolVersion: 5,
      clientId: `t-${username ?? 'anon'}-${Math.random().toString(16).slice(2, 8)}`,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ...(username !== undefined ? { username, password: password ?? passwords[username] ?? '' } : {}),
    });
    clients.push(c);
    return c;
  }

  /** Subscribes at QoS 1. Mosquitto grants wildcard filters and applies the ACL to each message it delivers. */
  async function subscribe(c: MqttClient, filters: string[]): Promise<void> {
    const granted = await c.subscribeAsync(filters, { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual(filters.map(() => 1));
  }

  /** Topics received by `c` until `marker` arrives (published after the messages under test). */
  function receivedUntil(c: MqttClient, marker: string): Promise<string[]> {
    const seen: string[] = [];
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`marker ${marker} not received; got ${seen.join(', ')}`)), 5000);
      c.on('message', (topic, payload) => {
        seen.push(`${topic} ${payload.toString()}`);
        if (topic === marker) {
          clearTimeout(timer);
          resolve(seen);
        }
      });
    });
  }

  it('refuses anonymous clients and wrong passwords', async () => {
    await expect(connect(undefined)).rejects.toThrow();
    await expect(connect('M-1', 'wrong')).rejects.toThrow();
    await expect(connect('ingest@meterflow', 'wrong')).rejects.toThrow();
  });

  it('a meter publishes only under its own id; ingest reads every meter and concentrator through a shared subscription', async () => {
    const ingest = await connect('ingest@meterflow');
    await subscribe(ingest, [
      '$share/meterflow/meters/+/readings',
      '$share/meterflow/meters/+/events',
      '$share/meterflow/concentrators/+/readings',
      '$share/meterflow/headend/meters/+/exchange',
    ]);
    const m1 = await connect('M-1');
    const conc = await connect('CONC-7');
    const headend = await connect('headend@meterflow');
    const got = receivedUntil(ingest, 'meters/M-1/events');
    await m1.publishAsync('meters/M-1/readings', 'own', { qos: 1 });
    // MQTT 5 tells the publisher: PUBACK "Not authorized", and nothing is delivered.
    await expect(m1.publishAsync('meters/M-2/readings', 'forged', { qos: 1 })).rejects.toThrow('Not authorized');
    await expect(m1.publishAsync('concentrators/M-1/commands', 'x', { qos: 1 })).rejects.toThrow('Not authorized');
    await conc.publishAsync('concentrators/CONC-7/readings', 'batch', { qos: 1 });
    await expect(conc.publishAsync('concentrators/CONC-8/readings', 'forged', { qos: 1 })).rejects.toThrow('Not authorized');
    await headend.publishAsync('meters/M-9/readings', 'headend', { qos: 1 });
    await headend.publishAsync('concentrators/T-1/readings', 'headend-batch', { qos: 1 });
    // Meter-exchange work orders: the head end's alone; neither the meter itself nor a concentrator may order one.
    await expect(m1.publishAsync('headend/meters/M-1/exchange', 'forged-order', { qos: 1 })).rejects.toThrow('Not authorized');
    await expect(conc.publishAsync('headend/meters/M-1/exchange', 'forged-order', { qos: 1 })).rejects.toThrow('Not authorized');
    await headend.publishAsync('headend/meters/M-9/exchange', 'order', { qos: 1 });
    await m1.publishAsync('meters/M-1/events', 'marker', { qos: 1 });
    expect((await got).sort()).toEqual([
      'concentrators/CONC-7/readings batch',
      'concentrators/T-1/readings headend-batch',
      'headend/meters/M-9/exchange order',
      'meters/M-1/events marker',
      'meters/M-1/readings own',
      'meters/M-9/readings headend',
    ]);
  });

  it('commands: the api sends them, each meter reads only its own, ingest may not send', async () => {
    const m1 = await connect('M-1');
    const m2 = await connect('M-2');
    await subscribe(m1, ['meters/M-1/commands']);
    await subscribe(m2, ['meters/+/commands']);
    const api = await connect('api@meterflow');
    const ingest = await connect('ingest@meterflow');
    const got1 = receivedUntil(m1, 'meters/M-1/commands');
    const got2 = receivedUntil(m2, 'meters/M-2/commands');
    await expect(ingest.publishAsync('meters/M-2/commands', 'from-ingest', { qos: 1 })).rejects.toThrow('Not authorized');
    await expect(m1.publishAsync('meters/M-2/commands', 'from-m1', { qos: 1 })).rejects.toThrow('Not authorized');
    await api.publishAsync('meters/M-1/commands', 'read', { qos: 1 });
    await api.publishAsync('meters/M-2/commands', 'from-api', { qos: 1 });
    expect(await got1).toEqual(['meters/M-1/commands read']);
    // M-2's wildcard did not deliver M-1's command, which was published first.
    expect(await got2).toEqual(['meters/M-2/commands from-api']);
  });

  it('responses: the meter answers, only the api reads them, and the api may re-publish the reading for ingest', async () => {
    const api = await connect('api@meterflow');
    await subscribe(api, ['meters/+/responses', 'meters/+/readings']);
    const ingest = await connect('ingest@meterflow');
    await subscribe(ingest, ['meters/+/responses', 'meters/M-2/readings']);
    const m2 = await connect('M-2');
    const apiGot = receivedUntil(api, 'meters/M-2/responses');
    const ingestGot: string[] = [];
    const ingestDone = new Promise<void>((resolve) => {
      ingest.on('message', (topic, payload) => {
        ingestGot.push(`${topic} ${payload.toString()}`);
        if (payload.toString() === 'r2') resolve();
      });
    });
    // reading, response, reading: each client's marker comes after what it must not see.
    await m2.publishAsync('meters/M-2/readings', 'r1', { qos: 1 });
    await m2.publishAsync('meters/M-2/responses', 'answer', { qos: 1 });
    await m2.publishAsync('meters/M-2/readings', 'r2', { qos: 1 });
    // The api may not read readings, ingest may not read responses.
    expect(await apiGot).toEqual(['meters/M-2/responses answer']);
    await ingestDone;
    expect(ingestGot).toEqual(['meters/M-2/readings r1', 'meters/M-2/readings r2']);
    const again = receivedUntil(ingest, 'meters/M-2/readings');
    await api.publishAsync('meters/M-2/readings', 'remote-read', { qos: 1 });
    expect(await again).toEqual(['meters/M-2/readings remote-read']);
  });
});
