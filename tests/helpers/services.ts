import { randomBytes } from 'node:crypto';
import { startInfluxd, startMosquitto, startRedis, type LocalService } from '../../simulators/services.js';

export type { LocalService } from '../../simulators/services.js';
export { freePort } from '../../simulators/services.js';

/** Private Redis on a free port (killable, restartable). `persist` turns AOF on so a restart keeps data. */
export const startTestRedis = (opts: { persist?: boolean } = {}): Promise<LocalService> => startRedis(opts);
export { startRedis, startMosquitto };
/** Private influxd 1.x on a free port with a throw-away data dir. */
export const startInflux = (): Promise<LocalService> => startInfluxd();

/** Unique key prefix / queue name / database per test. */
export function uniquePrefix(label = 't'): string {
  return `${label}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}
