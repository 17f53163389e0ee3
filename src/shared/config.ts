import { existsSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IANAZone } from 'luxon';
import type { TSchema, Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from './errors.js';

export const SCOPES = ['billing:read', 'alerts:write', 'meters:command', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

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
  };
  readonly redis: { readonly url: string };
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
  readonly api: {
    readonly host: string;
    readonly port: number;
    readonly tokens: ReadonlyMap<string, ReadonlySet<Scope>>;
  };
  readonly streamShards: number;
  readonly workerIndex: number;
  readonly workerCount: number;
  readonly logLevel: LogLevel;
  /** Local time zone for days, time-of-week slots and tariffs (IANA name). */
  readonly timezone: string;
}

export type Env = Readonly<Record<string, string | undefined>>;

function str(env: Env, name: string, fallback: string): string {
  const v = env[name];
  return v === undefined || v === '' ? fallback : v;
}

function optional(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

function url(env: Env, name: string, fallback: string, protocols: string[]): string {
  const v = str(env, name, fallback);
  let parsed: URL;
  try {
    parsed = new URL(v);
  } catch (err) {
    throw new ConfigError(name, `a URL (${protocols.join(', ')}), got "${v}"`, { cause: err });
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `a URL with scheme ${protocols.join(' or ')}, got "${parsed.protocol}"`);
  }
  return v.replace(/\/+$/, '');
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  if (!/^-?\d+$/.test(v.trim())) throw new ConfigError(name, `an integer from ${min} to ${max}, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new ConfigError(name, `an integer from ${min} to ${max}, got ${n}`);
  return n;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback?: T): T | undefined {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  const found = allowed.find((a) => a === v);
  if (found === undefined) throw new ConfigError(name, `one of ${allowed.join(', ')}, got "${v}"`);
  return found;
}

/** API_TOKENS: a JSON object, token → list of scopes. */
export function parseTokens(raw: string | undefined): Map<string, Set<Scope>> {
  const tokens = new Map<string, Set<Scope>>();
  if (raw === undefined || raw.trim() === '') return tokens;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new ConfigError('API_TOKENS', 'a JSON object {"<token>": ["scope", …]}, which did not parse', { cause: err });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError('API_TOKENS', 'a JSON object {"<token>": ["scope", …]}');
  }
  for (const [token, scopes] of Object.entries(parsed)) {
    // Never echo the token itself: only its position.
    const where = `API_TOKENS (token #${tokens.size + 1})`;
    if (token.length < 8) throw new ConfigError(where, 'a token of at least 8 characters');
    if (!Array.isArray(scopes)) throw new ConfigError(where, `a list of scopes (${SCOPES.join(', ')})`);
    const set = new Set<Scope>();
    for (const s of scopes) {
      const scope = SCOPES.find((k) => k === s);
      if (scope === undefined) throw new ConfigError(where, `scopes from ${SCOPES.join(', ')}, got ${JSON.stringify(s)}`);
      set.add(scope);
    }
    tokens.set(token, set);
  }
  return tokens;
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
  const config: AppConfig = {
    instance,
    mqtt: {
      url: url(env, 'MQTT_URL', 'mqtt://127.0.0.1:1883', ['mqtt:', 'mqtts:', 'ws:', 'wss:', 'tcp:', 'ssl:']),
      username: optional(env, 'MQTT_USERNAME'),
      password: optional(env, 'MQTT_PASSWORD'),
      clientId: str(env, 'MQTT_CLIENT_ID', `meterflow-${instance}`),
      sharedGroup,
    },
    redis: { url: url(env, 'REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']) },
    influx: {
      url: url(env, 'INFLUX_URL', 'http://127.0.0.1:8086', ['http:', 'https:']),
      token: optional(env, 'INFLUX_TOKEN'),
      org: optional(env, 'INFLUX_ORG'),
      bucket: str(env, 'INFLUX_BUCKET', 'meterflow'),
      api: oneOf(env, 'INFLUX_API', ['v1', 'v2'] as const),
      username: optional(env, 'INFLUX_USERNAME'),
      password: optional(env, 'INFLUX_PASSWORD'),
    },
    api: {
      host: str(env, 'API_HOST', '127.0.0.1'),
      port: int(env, 'API_PORT', 8080, 0, 65535),
      tokens: parseTokens(env.API_TOKENS),
    },
    streamShards: int(env, 'STREAM_SHARDS', 16, 1, 4096),
    workerIndex,
    workerCount,
    logLevel: oneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info') ?? 'info',
    timezone,
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
  if (o !== null && typeof o === 'object' && !(o instanceof Map) && !(o instanceof Set)) {
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
