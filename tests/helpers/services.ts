import { randomBytes } from 'node:crypto';
import { startInfluxd, startMosquitto, startRedis, startRedisCluster, type LocalService } from '../../simulators/services.js';

export type { LocalRedisCluster, LocalService } from '../../simulators/services.js';
export { freePort } from '../../simulators/services.js';

/** Private Redis on a free port (killable, restartable). `persist` turns AOF on so a restart keeps data. */
export const startTestRedis = (opts: { persist?: boolean } = {}): Promise<LocalService> => startRedis(opts);
export { startRedis, startMosquitto };
/** A private 3-master Redis Cluster on free ports (REDIS_CLUSTER_NODES = its `clusterNodes`). */
export const startTestRedisCluster = (): ReturnType<typeof startRedisCluster> => startRedisCluster();
/** Private influxd 1.x on a free port with a throw-away data dir. */
export const startInflux = (): Promise<LocalService> => startInfluxd();

/** Unique key prefix / queue name / database per test. */
export function uniquePrefix(label = 't'): string {
  return `${label}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}
