import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { AppConfig } from './config.js';

/** MQTT.js client with the deployment's credentials; waits for the first CONNACK (or fails after timeoutMs). */
export async function connectMqtt(
  cfg: AppConfig['mqtt'],
  opts: Partial<IClientOptions> & { clientId: string },
  timeoutMs = 10_000,
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
