import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/shared/config.js';
import { ConfigError } from '../../src/shared/errors.js';
import { fatalConnectError } from '../../src/shared/mqtt.js';

describe('MQTT TLS settings (MQTT_CA_FILE, MQTT_CERT_FILE, MQTT_KEY_FILE)', () => {
  let dir: string;
  const file = (name: string): string => join(dir, name);
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mf-config-mqtt-'));
    writeFileSync(file('ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    writeFileSync(file('client.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    writeFileSync(file('client.key'), '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n');
    writeFileSync(file('rsa.key'), '-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n');
    writeFileSync(file('junk.pem'), 'not a certificate');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('has no TLS files by default', () => {
    expect(loadConfig({}).mqtt.tls).toBeUndefined();
  });

  it('keeps the paths of the files it checked', () => {
    const cfg = loadConfig({
      MQTT_URL: 'mqtts://broker.example.net:8883',
      MQTT_CA_FILE: file('ca.pem'),
      MQTT_CERT_FILE: file('client.pem'),
      MQTT_KEY_FILE: file('rsa.key'),
    });
    expect(cfg.mqtt).toMatchObject({
      url: 'mqtts://broker.example.net:8883',
      tls: { caFile: file('ca.pem'), certFile: file('client.pem'), keyFile: file('rsa.key') },
    });
    expect(loadConfig({ MQTT_URL: 'mqtts://b:8883', MQTT_CA_FILE: file('ca.pem') }).mqtt.tls).toEqual({ caFile: file('ca.pem') });
  });

  it.each([
    { name: 'a missing file', env: { MQTT_URL: 'mqtts://b:8883', MQTT_CA_FILE: '/nonexistent/ca.pem' }, variable: 'MQTT_CA_FILE' },
    { name: 'a file that is no certificate', env: { MQTT_URL: 'mqtts://b:8883', MQTT_CA_FILE: 'junk.pem' }, variable: 'MQTT_CA_FILE' },
    {
      name: 'a key where the certificate goes',
      env: { MQTT_URL: 'mqtts://b:8883', MQTT_CERT_FILE: 'client.key', MQTT_KEY_FILE: 'client.key' },
      variable: 'MQTT_CERT_FILE',
    },
    { name: 'a certificate without its key', env: { MQTT_URL: 'mqtts://b:8883', MQTT_CERT_FILE: 'client.pem' }, variable: 'MQTT_KEY_FILE' },
    { name: 'a key without its certificate', env: { MQTT_URL: 'mqtts://b:8883', MQTT_KEY_FILE: 'client.key' }, variable: 'MQTT_CERT_FILE' },
    { name: 'TLS files with a plain-text URL', env: { MQTT_URL: 'mqtt://b:1883', MQTT_CA_FILE: 'ca.pem' }, variable: 'MQTT_URL' },
  ])('fails at start on $name, naming $variable', ({ env, variable }) => {
    const resolved = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, k.endsWith('_FILE') && !v.startsWith('/') ? file(v) : v]));
    let caught: unknown;
    try {
      loadConfig(resolved);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect(caught instanceof ConfigError ? caught.variable : undefined).toBe(variable);
  });
});

describe('fatalConnectError', () => {
  const withCode = (message: string, code: number | string): Error => Object.assign(new Error(message), { code });
  it.each([
    { err: withCode('Connection refused: Not authorized', 5), fatal: true },
    { err: withCode('Connection refused: Bad username or password', 4), fatal: true },
    { err: withCode('Bad User Name or Password', 134), fatal: true },
    { err: withCode('self-signed certificate in certificate chain', 'SELF_SIGNED_CERT_IN_CHAIN'), fatal: true },
    { err: withCode("Hostname/IP does not match certificate's altnames", 'ERR_TLS_CERT_ALTNAME_INVALID'), fatal: true },
    { err: withCode('connect ECONNREFUSED 127.0.0.1:8883', 'ECONNREFUSED'), fatal: false },
    { err: withCode('Connection refused: Server unavailable', 3), fatal: false },
    { err: new Error('no code'), fatal: false },
  ])('$err.message → fatal: $fatal', ({ err, fatal }) => {
    expect(fatalConnectError(err) !== undefined).toBe(fatal);
  });
});
