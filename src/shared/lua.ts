import { createHash } from 'node:crypto';
import { keySlot, type RedisClient } from './redis.js';

/**
 * The one way meterflow runs Lua: EVALSHA, and EVAL when the server does not know the script yet (first use, or
 * after a restart or failover emptied its script cache). Keys are passed as KEYS so a cluster routes the call: both
 * go to the node of the keys' slot, so each master's own script cache is filled on its first NOSCRIPT.
 */
export class LuaScript {
  readonly sha: string;

  constructor(readonly src: string) {
    this.sha = createHash('sha1').update(src).digest('hex');
  }

  async run(redis: RedisClient, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    assertOneSlot(keys);
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.src, keys.length, ...keys, ...args);
    }
  }
}

/**
 * A script's keys must share one Cluster slot (a cluster answers CROSSSLOT otherwise), and there must be one to route
 * by. Checked on a single Redis too, so the tests catch a script that would fail only on a cluster.
 */
function assertOneSlot(keys: readonly string[]): void {
  const [first, ...rest] = keys;
  if (first === undefined) throw new Error('LuaScript: a script needs at least one key, to route it on a cluster');
  const slot = keySlot(first);
  const other = rest.find((k) => keySlot(k) !== slot);
  if (other !== undefined) throw new Error(`LuaScript: keys in different cluster slots ("${first}", "${other}"): give them one hash tag`);
}
