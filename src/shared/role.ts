import type { Registry } from 'prom-client';
import type { AppConfig } from './config.js';
import type { Logger } from './logger.js';

/** What every role gets from the CLI; each role opens (and closes) its own connections. */
export interface RoleContext {
  config: AppConfig;
  log: Logger;
  metrics: Registry;
}

export interface RoleHandle {
  /** Stop taking work, finish in-flight work, flush, close connections in reverse order. Safe to call twice. */
  close(): Promise<void>;
}

/** Makes close() idempotent: later calls get the first call's promise. */
export function once(close: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= close());
}
