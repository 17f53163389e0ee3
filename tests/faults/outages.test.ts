import { afterEach, describe, expect, it } from 'vitest';
import { FaultRig } from './rig.js';

/**
 * Fault suite, part 2: long outages under a steady flow — the ingest frozen past its keepalive, Redis away for a
 * minute, InfluxDB away for two. Nothing acknowledged may be lost or counted twice, memory stays bounded, and the
 * pipeline catches up by itself.
 */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const MEMORY_CAP_MIB = 400;

describe('fault suite: outages', () => {
  let rig: FaultRig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it('SIGSTOP of the ingest for 60 s under load, then SIGCONT: keepalive timeout, reconnect, redelivery, nothing lost', async () => {
    rig = await FaultRig.start();
    await rig.startPipeline();
    await sleep(3000);
    await rig.signal('ingest', 'SIGSTOP');
    await sleep(60_000);
    await rig.signal('ingest', 'SIGCONT');
    await sleep(5000);
    const r = await rig.finish();
    expect(r.lost, r.text).toBe(0);
  }, 300_000);

  it('Redis stopped for 60 s under load: the ingest stops acknowledging with bounded memory, then everything lands once', async () => {
    rig = await FaultRig.start();
    await rig.startPipeline();
    await sleep(3000);
    await rig.redis.stop();
    let peak = 0;
    for (let i = 0; i < 60; i++) {
      await sleep(1000);
      peak = Math.max(peak, rig.rssMiB('ingest'));
    }
    await rig.redis.restart();
    await sleep(5000);
    const r = await rig.finish();
    expect(r.lost, r.text).toBe(0);
    expect(peak, 'ingest resident memory during the outage, MiB').toBeLessThan(MEMORY_CAP_MIB);
  }, 300_000);

  it('InfluxDB stopped for 2 min under load: the stream worker holds its place with bounded memory and catches up', async () => {
    rig = await FaultRig.start();
    await rig.startPipeline();
    await sleep(3000);
    await rig.influxSvc.stop();
    let peak = 0;
    for (let i = 0; i < 120; i++) {
      await sleep(1000);
      peak = Math.max(peak, rig.rssMiB('stream'));
    }
    await rig.influxSvc.restart();
    await sleep(5000);
    const r = await rig.finish();
    expect(r.lost, r.text).toBe(0);
    expect(peak, 'stream worker resident memory during the outage, MiB').toBeLessThan(MEMORY_CAP_MIB);
  }, 400_000);
});
