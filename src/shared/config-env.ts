import { ConfigError } from './errors.js';

/** The environment the config is read from (process.env, or a test's own). */
export type Env = Readonly<Record<string, string | undefined>>;

/** Readers of one variable each: a value or the fallback, or a ConfigError naming the variable. */
export function str(env: Env, name: string, fallback: string): string {
  const v = env[name];
  return v === undefined || v === '' ? fallback : v;
}

export function optional(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

export function url(env: Env, name: string, fallback: string, protocols: string[]): string {
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

export function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  if (!/^-?\d+$/.test(v.trim())) throw new ConfigError(name, `an integer from ${min} to ${max}, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new ConfigError(name, `an integer from ${min} to ${max}, got ${n}`);
  return n;
}

export function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback?: T): T | undefined {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  const found = allowed.find((a) => a === v);
  if (found === undefined) throw new ConfigError(name, `one of ${allowed.join(', ')}, got "${v}"`);
  return found;
}

/** A PEM file the process can read, else a ConfigError naming the variable (never the file's content). */
