import { Type } from 'typebox';
import type { RoutePlugin } from '../app.js';

/** Liveness, readiness (Redis and InfluxDB answer) and Prometheus metrics. */
export const healthRoutes: RoutePlugin = async (app, deps) => {
  app.get('/healthz', { schema: { hide: true, response: { 200: Type.Object({ status: Type.String() }) } } }, async () => ({ status: 'ok' }));

  app.get(
    '/readyz',
    {
      schema: {
        hide: true,
        response: { 200: Type.Object({ status: Type.String() }), 503: Type.Object({ status: Type.String(), failing: Type.Array(Type.String()) }) },
      },
    },
    async (_req, reply) => {
      const failing: string[] = [];
      const timeout = <T>(p: Promise<T>): Promise<T> => Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error('timeout')), 2000))]);
      await Promise.all([timeout(deps.redis.ping()).catch(() => failing.push('redis')), timeout(deps.influx.ping()).catch(() => failing.push('influxdb'))]);
      return failing.length ? reply.code(503).send({ status: 'unavailable', failing }) : { status: 'ready' };
    },
  );

  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    reply.header('content-type', deps.metrics.contentType);
    return deps.metrics.metrics();
  });
};
