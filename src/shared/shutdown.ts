import type { Logger } from './logger.js';

/**
 * Closes `closers` in order on the first SIGTERM/SIGINT; a second signal exits at once.
 * Returns a function that runs the same shutdown programmatically.
 */
export function onShutdown(
  log: Logger,
  closers: Array<() => Promise<void>>,
  opts: { timeoutMs?: number; exit?: (code: number) => void } = {},
): () => Promise<void> {
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  let running: Promise<void> | undefined;
  const shutdown = (signal?: string): Promise<void> => {
    if (running) {
      if (signal) {
        log.warn({ signal }, 'second signal, exiting now');
        exit(130);
      }
      return running;
    }
    log.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      log.error({ timeoutMs: opts.timeoutMs ?? 15_000 }, 'shutdown timed out');
      exit(1);
    }, opts.timeoutMs ?? 15_000);
    timer.unref();
    running = (async () => {
      for (const close of closers) {
        try {
          await close();
        } catch (err) {
          log.error({ err }, 'error while closing');
        }
      }
      clearTimeout(timer);
      log.info('stopped');
    })();
    return running;
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM').then(() => exit(0)));
  process.on('SIGINT', () => void shutdown('SIGINT').then(() => exit(0)));
  return () => shutdown();
}
