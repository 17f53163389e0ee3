import { existsSync, readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IANAZone } from 'luxon';
import type { TSchema, Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { parse as parseYaml } from 'yaml';
import { type ApiConfig, apiConfig } from './config-api.js';
import { type Env, int, oneOf, optional, str, url } from './config-env.js';
import { ConfigError } from './errors.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface AppConfig {
  readonly instance: string;
  readonly mqtt: {
    readonly url: string;
    readonly username?: string;
    readonly password?: string;
    /** Base client id; persistent sessions need it fixed per instance. */
    readonly clientId: string;
    /** When set, ingest subscribes with `$share/<group>/…` so several instances split the load. */
    readonly sharedGroup?: string;
    /** TLS files (PEM paths) for an `mqtts://` or `wss://` broker; checked readable at start. */
    readonly tls?: MqttTlsFiles;
  };
  readonly redis: RedisConfig;
  readonly influx: {
    readonly url: string;
    readonly token?: string;
    readonly org?: string;
    readonly bucket: string;
    /** Unset: detected from the server's /ping headers. */
    readonly api?: 'v1' | 'v2';
    readonly username?: string;
    readonly password?: string;
  };
  readonly api: ApiConfig;
  readonly streamShards: number;
  readonly workerIndex: number;
  readonly workerCount: number;
  readonly logLevel: LogLevel;
  /** Local time zone for days, time-of-week slots and tariffs (IANA name). */
  readonly timezone: string;
  /** Where operators' Grafana answers (the console links its dashboards), without a trailing slash. */
  readonly grafanaUrl: string;
}

/** A Redis Cluster node to start from (ioredis discovers the others). */
export interface RedisNodeAddress {
  readonly host: string;
  readonly port: number;
}

export interface RedisConfig {
  /** REDIS_URL: a single Redis (unused when `clusterNodes` is set). */
  readonly url: string;
  /** REDIS_CLUSTER_NODES: when set, every role talks to a Redis Cluster through these nodes instead of `url`. */
  readonly clusterNodes?: readonly RedisNodeAddress[];
}

/**
 * MQTT over TLS: `caFile` is the CA that signed the broker's certificate (unset: the system's CAs); `certFile` and
 * `keyFile` are this client's certificate and key, for brokers that authenticate clients by certificate.
 */
export interface MqttTlsFiles {
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

function pemFile(env: Env, name: string, label: 'CERTIFICATE' | 'PRIVATE KEY'): string | undefined {
  const path = optional(env, name);
  if (path === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(name, `a readable PEM file, but ${path} cannot be read`, { cause: err });
  }
  // "PRIVATE KEY" also matches "RSA PRIVATE KEY" and "EC PRIVATE KEY".
  if (!new RegExp(`-----BEGIN [A-Z ]*${label}-----`).test(text)) throw new ConfigError(name, `a PEM file holding a ${label.toLowerCase()}, at ${path}`);
  return path;
}

/** MQTT_CA_FILE, MQTT_CERT_FILE, MQTT_KEY_FILE: only with a TLS URL, and a certificate only with its key. */
function mqttTls(env: Env, brokerUrl: string): MqttTlsFiles | undefined {
  const caFile = pemFile(env, 'MQTT_CA_FILE', 'CERTIFICATE');
  const certFile = pemFile(env, 'MQTT_CERT_FILE', 'CERTIFICATE');
  const keyFile = pemFile(env, 'MQTT_KEY_FILE', 'PRIVATE KEY');
  if (caFile === undefined && certFile === undefined && keyFile === undefined) return undefined;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError(certFile === undefined ? 'MQTT_CERT_FILE' : 'MQTT_KEY_FILE', 'set together with its pair (MQTT_CERT_FILE and MQTT_KEY_FILE)');
  }
  // TLS files with a plain-text URL would silently send the password in the clear.
  if (!/^(mqtts|wss|ssl):/.test(brokerUrl)) {
    throw new ConfigError('MQTT_URL', `an mqtts:// (or wss://) URL when MQTT_CA_FILE/MQTT_CERT_FILE are set, got "${brokerUrl}"`);
  }
  return { caFile, certFile, keyFile };
}

const CLUSTER_NODES_SHAPE = 'comma-separated host:port of Redis Cluster nodes, e.g. redis-1:6379,redis-2:6379';

/** REDIS_CLUSTER_NODES: `host:port,host:port,…` (an IPv6 host in brackets: `[::1]:7000`); unset or empty: no cluster. */
function clusterNodes(env: Env): RedisNodeAddress[] | undefined {
  const raw = optional(env, 'REDIS_CLUSTER_NODES');
  if (raw === undefined) return undefined;
  const nodes: RedisNodeAddress[] = [];
  for (const item of raw.split(',').map((x) => x.trim())) {
    if (item === '') continue;
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_.-]+)):(\d{1,5})$/.exec(item);
    const host = m?.[1] ?? m?.[2];
    const port = Number(m?.[3]);
    if (host === undefined || !Number.isInteger(port) || port < 1 || port > 65535 || (m?.[1] !== undefined && isIP(host) !== 6)) {
      throw new ConfigError('REDIS_CLUSTER_NODES', `${CLUSTER_NODES_SHAPE}, got "${item}"`);
    }
    nodes.push({ host, port });
  }
  if (nodes.length === 0) throw new ConfigError('REDIS_CLUSTER_NODES', `${CLUSTER_NODES_SHAPE}, got "${raw}"`);
  return nodes;
}

/** Reads and checks the environment once; the result is frozen. Throws ConfigError naming the variable. */
export function loadConfig(env: Env = process.env): AppConfig {
  const instance = str(env, 'MF_INSTANCE', hostname());
  const workerCount = int(env, 'WORKER_COUNT', 1, 1, 1024);
  const workerIndex = int(env, 'WORKER_INDEX', 0, 0, 1023);
  if (workerIndex >= workerCount) throw new ConfigError('WORKER_INDEX', `an integer below WORKER_COUNT (${workerCount}), got ${workerIndex}`);
  const timezone = str(env, 'MF_TIMEZONE', 'UTC');
  if (!IANAZone.isValidZone(timezone)) throw new ConfigError('MF_TIMEZONE', `an IANA time zone such as Europe/Madrid, got "${timezone}"`);
  const sharedGroup = optional(env, 'MQTT_SHARED_GROUP');
  if (sharedGroup !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(sharedGroup)) {
    throw new ConfigError('MQTT_SHARED_GROUP', 'a group name of letters, digits, _ or -');
  }
  // A group member's persistent session keeps its share of the messages while the member is down (mosquitto#1747),
  // and only a client with the same id gets them back: a host name (a container's or pod's) can change on restart.
  if (sharedGroup !== undefined && optional(env, 'MF_INSTANCE') === undefined && optional(env, 'MQTT_CLIENT_ID') === undefined) {
    throw new ConfigError('MF_INSTANCE', 'a stable name per ingest instance (or MQTT_CLIENT_ID) with MQTT_SHARED_GROUP, not the host name (docs/scaling.md)');
  }
  const mqttUrl = url(env, 'MQTT_URL', 'mqtt://127.0.0.1:1883', ['mqtt:', 'mqtts:', 'ws:', 'wss:', 'tcp:', 'ssl:']);
  const config: AppConfig = {
    instance,
    mqtt: {
      url: mqttUrl,
      username: optional(env, 'MQTT_USERNAME'),
      password: optional(env, 'MQTT_PASSWORD'),
      clientId: str(env, 'MQTT_CLIENT_ID', `meterflow-${instance}`),
      sharedGroup,
      tls: mqttTls(env, mqttUrl),
    },
    redis: { url: url(env, 'REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']), clusterNodes: clusterNodes(env) },
    influx: {
      url: url(env, 'INFLUX_URL', 'http://127.0.0.1:8086', ['http:', 'https:']),
      token: optional(env, 'INFLUX_TOKEN'),
      org: optional(env, 'INFLUX_ORG'),
      bucket: str(env, 'INFLUX_BUCKET', 'meterflow'),
      api: oneOf(env, 'INFLUX_API', ['v1', 'v2'] as const),
      username: optional(env, 'INFLUX_USERNAME'),
      password: optional(env, 'INFLUX_PASSWORD'),
    },
    api: apiConfig(env),
    streamShards: int(env, 'STREAM_SHARDS', 16, 1, 4096),
    workerIndex,
    workerCount,
    logLevel: oneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info') ?? 'info',
    timezone,
    grafanaUrl: url(env, 'GRAFANA_URL', 'http://127.0.0.1:3000', ['http:', 'https:']),
  };
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(config.influx.bucket)) {
    throw new ConfigError('INFLUX_BUCKET', 'a bucket/database name of letters, digits, _ . or -');
  }
  return deepFreeze(config);
}

/** The process environment with some variables replaced (the demo points roles at the services it started). */
export function loadConfigWith(overrides: Env): AppConfig {
  return loadConfig({ ...process.env, ...overrides });
}

/** Where secrets named in config files (e.g. a webhook's `secretEnv`) are looked up: the process environment. */
export function secretEnv(): Env {
  return process.env;
}

/** Whether a variable is set in the process environment (the demo only fills in what the user did not set). */
export function isSet(name: string): boolean {
  return optional(process.env, name) !== undefined;
}

function deepFreeze<T>(o: T): T {
  // Buffers (token digests) cannot be frozen; nothing hands them out for writing.
  if (o !== null && typeof o === 'object' && !(o instanceof Map) && !(o instanceof Set) && !ArrayBuffer.isView(o)) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** The repo's config/ directory (thresholds, tariffs, classes). */
export const CONFIG_DIR = fileURLToPath(new URL('../../config/', import.meta.url));

type Plain = Record<string, unknown>;

function isPlain(v: unknown): v is Plain {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Objects merge key by key; arrays and scalars from `over` replace. */
export function deepMerge(base: unknown, over: unknown): unknown {
  if (!isPlain(base) || !isPlain(over)) return over === undefined ? base : over;
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(base[k], v);
  return out;
}

function readYaml(file: string, variable: string): unknown {
  try {
    return parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(variable, `readable YAML at ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** The MF_CONFIG override for one section: a directory of <name>.yaml files, or one YAML file keyed by section. */
function overrideFor(name: string, env: Env): unknown {
  const path = optional(env, 'MF_CONFIG');
  if (path === undefined) return undefined;
  if (!existsSync(path)) throw new ConfigError('MF_CONFIG', `a YAML file or a directory, but ${path} does not exist`);
  if (statSync(path).isDirectory()) {
    const file = join(path, `${name}.yaml`);
    return existsSync(file) ? readYaml(file, 'MF_CONFIG') : undefined;
  }
  const doc = readYaml(path, 'MF_CONFIG');
  return isPlain(doc) ? doc[name] : undefined;
}

/**
 * One config section: config/<name>.yaml deep-merged with the MF_CONFIG override, checked against `schema`.
 * A bad key fails with its path, e.g. `config/detection.yaml: spike.minWh: expected number`.
 */
export function loadSection<S extends TSchema>(name: string, schema: S, env: Env = process.env, dir = CONFIG_DIR): Static<S> {
  const file = join(dir, `${name}.yaml`);
  const base = existsSync(file) ? readYaml(file, `config/${name}.yaml`) : {};
  const merged = deepMerge(base ?? {}, overrideFor(name, env));
  const validator = Compile(schema);
  if (!validator.Check(merged)) {
    const first = validator.Errors(merged)[0];
    const at = first ? first.instancePath.replace(/^\//, '').replaceAll('/', '.') : '';
    const source = optional(env, 'MF_CONFIG') === undefined ? `config/${name}.yaml` : `config/${name}.yaml + MF_CONFIG`;
    throw new ConfigError(`${source}: ${name}${at ? `.${at}` : ''}`, first?.message ?? 'a value matching the schema');
  }
  return deepFreeze(merged);
}
