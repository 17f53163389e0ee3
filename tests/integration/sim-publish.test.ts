import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSimulation, type SimSummary } from '../../simulators/publish.js';
import { loadScenario } from '../../simulators/scenario.js';
import { startMosquitto, type LocalService } from '../helpers/services.js';

/** Order-free fingerprint of a set of messages (QoS 1 keeps order per topic, not across topics). */
function fingerprint(lines: string[]): string {
  return createHash('sha256')
    .update([...lines].sort().join('\n'))
    .digest('hex');
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('simulator publishing to a real Mosquitto', () => {
  let broker: LocalService;
  let sub: MqttClient;
  let received: string[] = [];
  const dirs: string[] = [];
  const outDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'mf-sim-'));
    dirs.push(d);
    return d;
  };

  beforeAll(async () => {
    broker = await startMosquitto();
    sub = await mqtt.connectAsync(broker.url, { clientId: `sim-test-sub-${process.pid}`, clean: true });
    sub.on('message', (topic, payload) => {
      if (!topic.endsWith('/responses') && !topic.endsWith('/commands')) received.push(`${topic}\n${payload.toString()}`);
    });
    // headend/#: meter-exchange work orders (headend/meters/{meterId}/exchange).
    await sub.subscribeAsync(['meters/#', 'concentrators/#', 'headend/#'], { qos: 1 });
  });

  afterAll(async () => {
    await sub?.endAsync();
    await broker?.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('backfill: the broker delivers exactly the messages of a dry run, and the files match', async () => {
    received = [];
    const scenario = loadScenario('simulators/scenarios/small.yaml', { batch: 8 }, { now: 0 });
    const dry = outDir();
    const lines: string[] = [];
    // The dry run's hash is over the same stream; collect it through a second, unpublished run.
    const dryRun = await runSimulation({ scenario, dryRun: true, outDir: dry });
    const out = outDir();
    let fleetSeen = 0;
    const summary: SimSummary = await runSimulation({
      scenario,
      mqttUrl: broker.url,
      outDir: out,
      maxInFlight: 64,
      onFleet: (fleet, plan) => {
        // Before the first publish: nothing has been received yet.
        expect(received).toEqual([]);
        fleetSeen = fleet.meters.length + plan.truth.length;
      },
    });
    expect(fleetSeen).toBe(40 + summary.truthRecords);
    expect(summary.sha256).toBe(dryRun.sha256);
    expect(summary.mode).toBe('backfill');
    await until(() => received.length >= summary.messages, 20_000, `${summary.messages} messages`);
    await new Promise((r) => setTimeout(r, 200));
    expect(received.length).toBe(summary.messages);

    // What arrived is what the generator produced (as a set: order across topics is not guaranteed).
    const { Simulation } = await import('../../simulators/engine.js');
    const { generateFleet } = await import('../../simulators/fleet.js');
    for (const m of new Simulation(generateFleet(scenario), scenario).messages()) lines.push(`${m.topic}\n${m.payload}`);
    expect(fingerprint(received)).toBe(fingerprint(lines));

    for (const f of ['customers.csv', 'transformers.csv', 'truth.jsonl', 'ledger.csv', 'scenario.json']) {
      expect(readFileSync(join(out, f), 'utf8')).toBe(readFileSync(join(dry, f), 'utf8'));
    }
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'))).toEqual(summary);
    expect(readFileSync(join(out, 'customers.csv'), 'utf8').trim().split('\n').length).toBe(41);
    expect(readFileSync(join(out, 'ledger.csv'), 'utf8').trim().split('\n').length).toBe(summary.ledgerRows + 1);
    expect(readFileSync(join(out, 'truth.jsonl'), 'utf8').trim().split('\n').length).toBe(summary.truthRecords);
    expect(summary.rejects).toBe(14);
  });

  it('live: paces simulated time at `speed` and answers on-demand reads meanwhile', async () => {
    received = [];
    const asker = await mqtt.connectAsync(broker.url, { clientId: `sim-test-asker-${process.pid}`, clean: true });
    const answers: Array<Record<string, unknown>> = [];
    asker.on('message', (_t, payload) => answers.push(JSON.parse(payload.toString())));
    await asker.subscribeAsync('meters/+/responses', { qos: 1 });
    const started = Date.now();
    let firstReading = Number.NaN;
    // 3 simulated hours at 3600x: about 3 s of wall time.
    const run = runSimulation({
      mqttUrl: broker.url,
      meters: 6,
      interval: '15m',
      seed: 3,
      from: '2026-01-05T00:00:00Z',
      to: '+3h',
      speed: 3600,
      progressMs: 100,
      onProgress: (p) => {
        if (p.readings > 0 && Number.isNaN(firstReading)) firstReading = p.simTime;
      },
    });
    await until(() => received.length > 6, 5000, 'the first readings');
    await asker.publishAsync('meters/M-000002/commands', JSON.stringify({ cmd: 'read', requestId: 'q-1' }), { qos: 1 });
    await asker.publishAsync('meters/M-999999/commands', JSON.stringify({ cmd: 'read', requestId: 'q-unknown' }), { qos: 1 });
    await asker.publishAsync('meters/M-000003/commands', 'garbage', { qos: 1 });
    await until(() => answers.length >= 1, 3000, 'the read answer');
    const summary = await run;
    const elapsed = Date.now() - started;
    await asker.endAsync();

    expect(summary.mode).toBe('live');
    expect(summary.messages).toBe(6 * 13);
    expect(elapsed).toBeGreaterThanOrEqual(2900);
    expect(elapsed).toBeLessThan(8000);
    expect(summary.answeredReads).toBe(1);
    expect(answers).toHaveLength(1);
    const a = answers[0] ?? {};
    expect([a.requestId, a.meterId, typeof a.importWh, typeof a.ts]).toEqual(['q-1', 'M-000002', 'number', 'string']);
    expect(Date.parse(String(a.ts))).toBeLessThanOrEqual(Date.parse('2026-01-05T03:00:00Z'));
  });

  it('stops cleanly when aborted, with the messages sent so far acknowledged', async () => {
    received = [];
    const ac = new AbortController();
    const summary = await runSimulation({
      mqttUrl: broker.url,
      meters: 300,
      interval: '15m',
      seed: 4,
      from: '2026-01-05T00:00:00Z',
      to: '+7d',
      signal: ac.signal,
      respond: false,
      progressMs: 50,
      onProgress: (p) => {
        if (p.messages >= 2000) ac.abort();
      },
    });
    expect(summary.aborted).toBe(true);
    expect(summary.unacknowledged).toBe(0);
    expect(summary.messages).toBeGreaterThan(0);
    expect(summary.messages).toBeLessThan(300 * (7 * 96 + 1));
    await until(() => received.length >= summary.messages, 10_000, 'the acknowledged messages');
  });

  it('fails clearly when the broker is not there', async () => {
    await expect(runSimulation({ mqttUrl: 'mqtt://127.0.0.1:1', meters: 1, from: '2026-01-05T00:00:00Z', to: '+1h', connectTimeoutMs: 1000 })).rejects.toThrow(
      /not reachable/,
    );
  });
});
