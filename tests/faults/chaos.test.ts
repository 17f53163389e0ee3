import { afterEach, describe, expect, it } from 'vitest';
import { Rng } from '../../simulators/prng.js';
import { describeDiff, FaultRig } from './rig.js';

/**
 * Fault suite, chaos: 5 minutes of faults drawn at random (seeded: MF_CHAOS_SEED, printed) from the suite's list —
 * SIGKILL of the ingest or the stream worker, Mosquitto restarted, Redis or InfluxDB away for seconds, the ingest
 * frozen — one after another during a steady flow, then one full ledger diff.
 */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CHAOS_MS = 5 * 60_000;

describe('fault suite: chaos', () => {
  let rig: FaultRig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it('5 minutes of random faults under load: nothing acknowledged lost, nothing counted twice', async () => {
    const seed = Number(process.env.MF_CHAOS_SEED ?? Date.now() % 100_000);
    const rng = new Rng(seed, 'chaos');
    rig = await FaultRig.start();
    const r = rig;
    // 5+ minutes at one interval per 150 ms is ~22 days of event time: start 60 days back.
    const flow = await r.startPipeline(40, 150, 60);
    const faults: Array<[string, () => Promise<void>]> = [
      [
        'SIGKILL ingest',
        async () => {
          await r.signal('ingest', 'SIGKILL');
          await sleep(rng.int(200, 3000));
          await r.startRole('ingest');
        },
      ],
      [
        'SIGKILL stream',
        async () => {
          await r.signal('stream', 'SIGKILL');
          await sleep(rng.int(200, 3000));
          await r.startRole('stream');
        },
      ],
      ['restart Mosquitto', () => r.mqtt.restart()],
      [
        'Redis away',
        async () => {
          await r.redis.stop();
          await sleep(rng.int(2000, 15_000));
          await r.redis.restart();
        },
      ],
      [
        'InfluxDB away',
        async () => {
          await r.influxSvc.stop();
          await sleep(rng.int(2000, 30_000));
          await r.influxSvc.restart();
        },
      ],
      [
        'SIGSTOP ingest',
        async () => {
          await r.signal('ingest', 'SIGSTOP');
          await sleep(rng.int(2000, 50_000));
          await r.signal('ingest', 'SIGCONT');
        },
      ],
    ];
    const log: string[] = [];
    const end = Date.now() + CHAOS_MS;
    while (Date.now() < end) {
      await sleep(rng.int(2000, 12_000));
      const [name, run] = faults[rng.int(0, faults.length - 1)] ?? faults[0] ?? ['none', async () => undefined];
      log.push(`${new Date().toISOString().slice(11, 19)} ${name}`);
      await run();
    }
    await sleep(3000);
    const done = await r.finish(300_000);
    const text = `seed ${seed}; faults: ${log.join(', ')}`;
    process.stdout.write(`chaos: ${text}; ${describeDiff(done.diff)}\n`);
    expect(done.lost, `${text}\n${done.text}`).toBe(0);
    expect(done.diff.acknowledged).toBe(flow.published);
  }, 900_000);
});
