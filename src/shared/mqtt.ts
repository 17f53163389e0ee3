import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { AppConfig } from './config.js';

/** The TLS options of a connection: the files of MQTT_CA_FILE / MQTT_CERT_FILE / MQTT_KEY_FILE, read now. */
export function tlsOptions(tls: AppConfig['mqtt']['tls']): Partial<IClientOptions> {
  if (tls === undefined) return {};
  const read = (path: string | undefined): Buffer | undefined => (path === undefined ? undefined : readFileSync(path));
  // The broker's certificate is always verified: there is no switch to turn that off.
  return { ca: read(tls.caFile), cert: read(tls.certFile), key: read(tls.keyFile), rejectUnauthorized: true };
}

/** CONNACK codes that mean "these credentials are refused" (MQTT 3.1.1: 4, 5; MQTT 5: 134, 135). */
const REFUSED = new Set([4, 5, 134, 135]);

/**
 * Why a first connection attempt can never succeed by retrying: the broker refused the credentials, or the TLS
 * handshake found a certificate it does not trust. Undefined for anything transient (broker down, restarting).
 */
export function fatalConnectError(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = 'code' in err ? err.code : undefined;
  if (typeof code === 'number' && REFUSED.has(code))
    return `the broker refused the credentials (${err.message}): check MQTT_USERNAME / MQTT_PASSWORD or the client certificate`;
  if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME|TLS/.test(code)) {
    return `TLS: the broker's certificate is not trusted (${code}): check MQTT_CA_FILE and the host name in MQTT_URL`;
  }
  return undefined;
}

/**
 * MQTT.js client with the deployment's credentials (and TLS files); waits for the first CONNACK (or fails after
 * timeoutMs, or at once when the broker refuses the credentials or its certificate is not trusted).
 * `prepare` runs before the connection opens: a persistent session's queued messages can arrive in the same
 * read as the CONNACK, so handlers must be in place before it, or MQTT.js' default handler acknowledges them.
 */
export async function connectMqtt(
  cfg: AppConfig['mqtt'],
  opts: Partial<IClientOptions> & { clientId: string },
  timeoutMs = 10_000,
  prepare?: (client: MqttClient) => void,
): Promise<MqttClient> {
  const client = mqtt.connect(cfg.url, {
    protocolVersion: 4,
    keepalive: 30,
    reconnectPeriod: 1000,
    connectTimeout: timeoutMs,
    username: cfg.username,
    password: cfg.password,
    ...tlsOptions(cfg.tls),
    ...opts,
  });
  prepare?.(client);
  await new Promise<void>((resolve, reject) => {
    const fail = (message: string, cause?: unknown): void => {
      clearTimeout(timer);
      client.removeListener('error', onError);
      client.end(true);
      reject(new Error(message, { cause }));
    };
    const onError = (err: unknown): void => {
      const why = fatalConnectError(err);
      if (why !== undefined) fail(`MQTT connection to ${cfg.url} refused: ${why}`, err);
    };
    const timer = setTimeout(() => fail(`MQTT broker not reachable at ${cfg.url} within ${timeoutMs} ms (set MQTT_URL)`), timeoutMs);
    client.on('error', onError);
    client.once('connect', () => {
      clearTimeout(timer);
      client.removeListener('error', onError);
      resolve();
    });
  });
  return client;
}
