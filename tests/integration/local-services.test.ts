import { createServer, type Server } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, listensOn, startMosquitto, startRedis } from '../../simulators/services.js';

/** A plain TCP server that answers on a port, as another test's server would. */
function holdPort(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer((sock) => sock.destroy());
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve(srv));
  });
}

describe('local services on free ports', () => {
  const held: Server[] = [];
  afterAll(() => {
    for (const s of held) s.close();
  });

  it('tells which process holds a listening port', async () => {
    const port = await freePort();
    held.push(await holdPort(port));
    expect(listensOn(process.pid, port)).toBe(true);
    expect(listensOn(process.pid, await freePort())).toBe(false);
  });

  it('a server that loses the race for its port is never taken for ready because someone else answers there', async () => {
    const port = await freePort();
    held.push(await holdPort(port));
    // Asked for that port: mosquitto and redis-server cannot bind it and exit; the test's own server answering on it
    // must not make them look started.
    await expect(startMosquitto({ port })).rejects.toThrow(/exited/);
    await expect(startRedis({ port })).rejects.toThrow(/exited/);
    // Without a port, each finds its own.
    const r = await startRedis();
    try {
      expect(r.port).not.toBe(port);
      expect(listensOn(process.pid, r.port)).toBe(false);
    } finally {
      await r.destroy();
    }
  });
});
