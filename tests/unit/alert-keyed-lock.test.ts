import { describe, expect, it } from 'vitest';
import { KeyedLock } from '../../src/alerting/keyed-lock.js';

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 1));

describe('keyed lock', () => {
  it('serialises holders of one key and lets other keys run alongside', async () => {
    const lock = new KeyedLock();
    const log: string[] = [];
    const job = (name: string, keys: string[]) =>
      lock.run(keys, async () => {
        log.push(`${name}+`);
        await tick();
        await tick();
        log.push(`${name}-`);
      });
    await Promise.all([job('a', ['k1']), job('b', ['k1']), job('c', ['k2']), job('d', ['k2', 'k1'])]);
    // a and c start together; b waits for a; d (needs k1 and k2) waits for both queues.
    expect(log).toEqual(['a+', 'c+', 'a-', 'b+', 'c-', 'b-', 'd+', 'd-']);
    expect(lock.size).toBe(0);
  });

  it('releases on failure', async () => {
    const lock = new KeyedLock();
    await expect(lock.run(['k'], async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await lock.run(['k'], async () => 42)).toBe(42);
    expect(lock.size).toBe(0);
  });
});
