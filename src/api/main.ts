import { RegistryConfig } from '../contracts/config-registry.js';
import { loadSection } from '../shared/config.js';
import { createInflux } from '../shared/influx.js';
import { closeRedis, createRedis } from '../shared/redis.js';
import { RegistryStore } from '../shared/registry.js';
import { once, type RoleContext, type RoleHandle } from '../shared/role.js';
import { buildApp } from './app.js';

export interface ApiHandle extends RoleHandle {
  /** Base URL the server listens on. */
  readonly url: string;
}

export async function startApi(ctx: RoleContext): Promise<ApiHandle> {
  const { config } = ctx;
  const log = ctx.log.child({ component: 'api' });
  const redis = createRedis(config.redis, 'meterflow-api');
  const influx = await createInflux(config.influx, log);
  const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig).defaults);
  const app = await buildApp({ config, log, metrics: ctx.metrics, redis, influx, registry });
  const address = await app.listen({ host: config.api.host, port: config.api.port });
  if (config.api.tokens.length === 0) log.warn('API_TOKENS is empty: every /api/v1 route answers 401');
  const plain = config.api.tokens.filter((t) => t.secret.kind === 'plain').map((t) => t.id);
  if (plain.length > 0) log.warn({ tokenIds: plain }, 'API_TOKENS holds plain tokens: store their hashes instead (meterflow token hash)');
  log.info({ address }, 'api listening');
  const close = once(async () => {
    await app.close();
    await influx.close();
    await closeRedis(redis);
  });
  return { url: address, close };
}
