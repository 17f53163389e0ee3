import { ensureBinary } from '../../simulators/services.js';

/**
 * Runs once before any test file: installs the service binaries the tests start (Debian packages, as root),
 * so parallel test files never race on apt-get.
 */
export default function setup(): void {
  for (const bin of ['redis-server', 'mosquitto', 'influxd', 'docker-compose'] as const) {
    ensureBinary(bin, (m) => process.stderr.write(`[setup] ${m}\n`));
  }
}
