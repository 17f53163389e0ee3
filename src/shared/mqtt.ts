import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { AppConfig } from './config.js';

/**
 * MQTT.js client with the deployment's credentials; waits for the first CONNACK (or fails after timeoutMs).
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
    ...opts,
  });
  prepare?.(client);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.end(true);
      reject(new Error(`MQTT broker not reachable at ${cfg.url} within ${timeoutMs} ms (set MQTT_URL)`));
    }, timeoutMs);
    client.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return client;
}
