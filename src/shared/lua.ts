import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * The one way meterflow runs Lua: EVALSHA, and EVAL when the server does not know the script yet (first use, or
 * after a restart or failover emptied its script cache). Keys are passed as KEYS so a cluster routes the call.
 */
export class LuaScript {
  readonly sha: string;

  constructor(readonly src: string) {
    this.sha = createHash('sha1').update(src).digest('hex');
  }

  async run(redis: Redis, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.src, keys.length, ...keys, ...args);
    }
  }
}
