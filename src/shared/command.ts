import { loadConfig, type AppConfig } from './config.js';
import { ConfigError } from './errors.js';
import { createLogger, type Logger } from './logger.js';

/**
 * Runs one CLI command (src/cli.ts, simulators/tools.ts) with the configuration loaded and checked: a configuration
 * error prints its message and exits 2, any other failure is logged as fatal and exits 1.
 */
export async function runCommand(cmd: string, body: (config: AppConfig, log: Logger) => Promise<void>): Promise<void> {
  let config: AppConfig;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`meterflow: configuration error: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
  const log = createLogger({ level: config.logLevel, name: `meterflow-${cmd}` });
  try {
    await body(config, log);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`meterflow: configuration error: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    log.fatal({ err }, 'failed');
    process.exitCode = 1;
    // Connections left open by a failed start must not keep the process alive.
    setTimeout(() => process.exit(1), 500).unref();
  }
}
