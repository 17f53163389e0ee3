import type { Logger } from './logger.js';

/**
 * Every role's `pipeline` / `dlq` points for the pipeline-health dashboard: `lines()` every `seconds`, handed to
 * `write` (the role's InfluxDB writer). A failed round is logged and skipped; the next one reports the deltas since
 * the last that succeeded. The timer never keeps the process alive.
 */
export function statsLoop(seconds: number, log: Logger, lines: () => string[] | Promise<string[]>, write: (lines: string[]) => void): { stop(): void } {
  const timer = setInterval(() => {
    void Promise.resolve()
      .then(lines)
      .then(write)
      .catch((err: unknown) => log.warn({ err }, 'pipeline stats failed'));
  }, seconds * 1000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
