import { afterEach, describe, expect, it } from 'vitest';
import { FaultRig } from './rig.js';

/**
 * Fault suite, part 1: processes killed or stopped under a steady flow, the broker restarted, points refused.
 * Each case ends with a ledger diff: every reading the broker acknowledged is in `reading` with its register,
 * and every meter's interval energy equals its register delta to the watt-hour.
 */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('fault suite: kills, restarts, refusals', () => {
  let rig: FaultRig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it('SIGKILL of the ingest, twice under load (before and after stream appends): nothing acknowledged is lost', async () => {
    rig = await FaultRig.start();
    const flow = await rig.startPipeline();
    for (let i = 0; i < 2; i++) {
      await sleep(4000);
      await rig.signal('ingest', 'SIGKILL');
      await sleep(1500); // the broker queues for the dead session meanwhile
      await rig.startRole('ingest');
    }
    await sleep(3000);
    const r = await rig.finish();
    expect(r.lost, r.text).toBe(0);
    expect(r.diff.acknowledged).toBe(flow.published);
  }, 300_000);

  it('SIGKILL of the stream worker mid-batch, twice: raw reads and intervals complete and exact', async () => {
    rig = await FaultRig.start();
    await rig.startPipeline();
    for (let i = 0; i < 2; i++) {
      await sleep(4000);
      await rig.signal('stream', 'SIGKILL');
      await sleep(1500);
      await rig.startRole('stream');
    }
    await sleep(3000);
    const r = await rig.finish();
    expect(r.lost, r.text).toBe(0);
  }, 300_000);

  it('Mosquitto restarted (persistent) under load: publisher and ingest resume their sessions, nothing lost', async () => {
    rig = await FaultRig.start();
    await rig.startPipeline();
    await sleep(4000);
    await rig.mqtt.restart();
    await sleep(6000);
    const r = await rig.finish();
    expect(r.lost, r.text).toBe(0);
  }, 300_000);

  it('SIGTERM of every role under load: each drains and exits 0, and a restart finishes the job', async () => {
    rig = await FaultRig.start();
    await rig.startPipeline();
    await sleep(4000);
    const t = Date.now();
    const [ingestCode, streamCode] = await Promise.all([rig.signal('ingest', 'SIGTERM'), rig.signal('stream', 'SIGTERM')]);
    expect({ ingestCode, streamCode }).toEqual({ ingestCode: 0, streamCode: 0 });
    expect(Date.now() - t).toBeLessThan(30_000);
    await rig.startRole('stream');
    await rig.startRole('ingest');
    await sleep(2000);
    const r = await rig.finish();
    expect(r.lost, r.text).toBe(0);
  }, 300_000);

  it('InfluxDB refusing points (older than its retention policy): those are quarantined with the reason, the rest written', async () => {
    rig = await FaultRig.start();
    // The flow starts 20 days back; a 19-day retention refuses its first day.
    await rig.influx.query('CREATE DATABASE meterflow WITH DURATION 19d SHARD DURATION 1d');
    const flow = await rig.startPipeline();
    await sleep(8000);
    await flow.stop();
    const cutoff = Date.now() - 19 * 86_400_000;
    const young = [...flow.ledger.keys()].filter((k) => Number(k.split('@')[1]) > cutoff + 3_600_000);
    const old = [...flow.ledger.keys()].filter((k) => Number(k.split('@')[1]) < cutoff - 3_600_000);
    expect(old.length).toBeGreaterThan(0);
    let d = await rig.diff();
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline && young.some((k) => d.missing.includes(k))) {
      await sleep(1000);
      d = await rig.diff();
    }
    const missing = new Set(d.missing);
    expect(
      young.filter((k) => missing.has(k)),
      rig.output(),
    ).toEqual([]);
    expect(old.filter((k) => !missing.has(k))).toEqual([]);
    // Each refused raw read is quarantined (its intervals and baselines too). Isolating them bisects the refused
    // batches, which may still be under way while later batches are already written.
    let dl = await rig.deadLetters();
    while (Date.now() < deadline && (dl.influx_rejected ?? 0) < old.length) {
      await sleep(1000);
      dl = await rig.deadLetters();
    }
    expect(dl.influx_rejected ?? 0).toBeGreaterThanOrEqual(old.length);
    const [, fields] = (await rig.redisClient.xrevrange('mf:dlq', '+', '-', 'COUNT', 1))[0] ?? [];
    expect(fields?.join(' ')).toMatch(/influx_rejected .*beyond retention/);
  }, 300_000);
});
