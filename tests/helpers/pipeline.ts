import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import type { Reading } from '../../src/contracts/reading.js';
import { loadConfig, type AppConfig } from '../../src/shared/config.js';
import { createLogger, type Logger } from '../../src/shared/logger.js';
import { createMetrics } from '../../src/shared/metrics.js';
import { keys, type RedisClient } from '../../src/shared/redis.js';
import type { RoleContext } from '../../src/shared/role.js';
import type { LocalService } from './services.js';
import { roleEnv } from '../../simulators/services.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

export interface TestServices {
  redis: LocalService;
  mqtt: LocalService;
  influx?: LocalService;
}

/** Environment for a role talking to private test services. */
export function serviceEnv(s: TestServices, extra: Record<string, string> = {}): Record<string, string> {
  return roleEnv(s, { MF_INSTANCE: 'test', ...extra });
}

/** Lines logged by the roles, kept for assertions (a real pino stream, not a mock). */
export function memoryLogger(level = 'warn'): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return { log: createLogger({ level, destination }), lines };
}

export function roleContext(env: Record<string, string>, log?: Logger): { ctx: RoleContext; config: AppConfig } {
  const config = loadConfig(env);
  return { ctx: { config, log: log ?? memoryLogger().log, metrics: createMetrics() }, config };
}

/** A role in its own process (`node bin/meterflow.js <role>`), so a test can SIGKILL it. */
export function spawnRole(role: string, env: Record<string, string>): ChildProcess & { output: () => string } {
  let out = '';
  const child = spawn(process.execPath, ['bin/meterflow.js', role], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (b: Buffer): void => {
    out = (out + b.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return Object.assign(child, { output: () => out });
}

export function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

/** Every reading in the stream shards, in stream order per shard. */
export async function streamReadings(redis: RedisClient, shards: number): Promise<Reading[]> {
  const out: Reading[] = [];
  for (let s = 0; s < shards; s++) {
    const entries = await redis.xrange(keys.readings(s), '-', '+');
    for (const [, fields] of entries) {
      const i = fields.indexOf('r');
      const raw = i >= 0 ? fields[i + 1] : undefined;
      if (raw !== undefined) out.push(...(JSON.parse(raw) as Reading[]));
    }
  }
  return out;
}

export async function dlqReasons(redis: RedisClient): Promise<string[]> {
  const entries = await redis.xrange(keys.dlq, '-', '+');
  return entries.map(([, f]) => f[f.indexOf('reason') + 1] ?? '');
}

/** Polls `check` until it returns true or the deadline passes (then returns false). */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 30_000, everyMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return check();
}
