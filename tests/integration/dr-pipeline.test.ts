import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { DateTime } from 'luxon';
import { Compile } from 'typebox/compile';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiApp, buildApp } from '../../src/api/app.js';
import { DetectionConfig } from '../../src/contracts/config-detection.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import { CustomerRecord } from '../../src/contracts/registry.js';
import { localDay } from '../../src/domain/local-time.js';
import { startIngest } from '../../src/ingest/main.js';
import { loadSection } from '../../src/shared/config.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { closeRedis, createRedis, keys } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import type { RoleHandle } from '../../src/shared/role.js';
import { startStream } from '../../src/stream/main.js';
import type { DrTruthRecord } from '../../simulators/demand-response.js';
import { generateFleet } from '../../simulators/fleet.js';
import { runSimulation } from '../../simulators/publish.js';
import { loadScenario } from '../../simulators/scenario.js';
import { memoryLogger, roleContext, serviceEnv } from '../helpers/pipeline.js';
import { type LocalService, startInflux, startMosquitto, startRedis, uniquePrefix } from '../helpers/services.js';

/**
 * Demand response through the real pipeline (issue 18): a simulated fleet of 24 meters (four classes, 15-minute
 * intervals, Europe/Madrid) backfills five weeks through Mosquitto → ingest → Redis Streams → stream worker →
 * InfluxDB; on a working-day afternoon near the end its 12 commercial, industrial and critical customers are called
 * and half of them cut 40 %. The event is recorded after the fact through the API and settled there; each
 * participant's settlement is compared with the simulator's truth (dr.jsonl: its counterfactual energy and true cut).
 *
 * Noise: 1 % per quarter hour (AR 0.5) and 1 % per day, a steady C&I site. The settlement's error is the CBL's
 * (baseline − counterfactual; the measured energy equals the registers' to the Wh). With this noise the High 4 of 5
 * CBL with its additive adjustment misses the counterfactual by 0.95 % rms of the baseline (2.8 % worst) over 384
 * participant-events (8 seeds × 8 event days, this scenario run offline through src/domain/cbl.ts), so a 40 % cut
 * settles within 2.2 % rms (6 % worst) of the truth: the issue's 10 % holds with room, and a non-responder's
 * |reduction| stays under 4 % of its baseline (about 4 rms). At 2 % interval noise the CBL misses by 1.7 % rms of the
 * baseline (4.1 % rms, 10.5 % worst of a 40 % cut); at the simulator's default 12 % (a household) by 11 % rms (31 % of
 * a 40 % cut): no CBL settles single homes to 10 %, so the participants here are the commercial, industrial and
 * critical customers.
 */

const ZONE = 'Europe/Madrid';
const DR = 'dr-pipeline-writer-01';
const INSIGHTS = 'dr-pipeline-insights1';
const CUT = 0.4;
const RESPONDER_TOLERANCE = 0.1;
const NON_RESPONDER_BOUND = 0.04;

const holidays = [...(loadSection('detection', DetectionConfig, {}).holidays?.calendars['ES-MD'] ?? [])];
const isWorkingDay = (d: DateTime): boolean => d.weekday <= 5 && !holidays.includes(d.toISODate() ?? '');
/** The event day: the latest working day at least 3 days ago (recorded after the fact, well within maxPastDays). */
let eventDay = DateTime.fromISO(localDay(ZONE, Date.now()), { zone: ZONE }).minus({ days: 3 });
while (!isWorkingDay(eventDay)) eventDay = eventDay.minus({ days: 1 });
const EVENT = { start: eventDay.set({ hour: 15 }), end: eventDay.set({ hour: 17 }) };
const utc = (d: DateTime): string => d.toUTC().toISO({ suppressMilliseconds: true }) ?? '';

const scenario = loadScenario(
  {
    name: 'dr-pipeline',
    seed: 2026_18,
    timezone: ZONE,
    // Five weeks of like days before the event, a day and a half after it (the rebound, closed intervals).
    from: utc(eventDay.minus({ days: 36 })),
    to: utc(eventDay.plus({ days: 2 })),
    batch: 8,
    fleet: {
      meters: 24,
      feeders: 2,
      metersPerTransformer: [4, 8],
      classMix: { residential: 0.5, commercial: 0.25, industrial: 0.125, critical: 0.125 },
      pvShare: 0,
      intervalMix: { '15': 1 },
    },
    profile: { noise: 0.01, noiseCorrelation: 0.5, dailyNoise: 0.01 },
    calendar: { region: 'ES-MD', holidays },
    demandResponse: {
      events: [
        {
          id: 'dr-afternoon',
          start: utc(EVENT.start),
          end: utc(EVENT.end),
          participants: { classes: ['commercial', 'industrial', 'critical'] },
          cut: [CUT, CUT],
          responders: 0.5,
          rebound: 0.2,
        },
      ],
    },
  },
  {},
  { now: Date.now() },
);

interface Settled {
  customerId: string;
  meterIds: string[];
  quality: string;
  baselineWh: number;
  actualWh: number;
  reductionWh: number;
  cutShare: number;
  selectedDays: string[];
}

const checkCustomer = Compile(CustomerRecord);

describe('demand response through the real pipeline: settled against the simulator’s true cut', () => {
  const svc: { redis?: LocalService; mqtt?: LocalService; influx?: LocalService } = {};
  const roles: RoleHandle[] = [];
  const fleet = generateFleet(scenario);
  let redis: Redis;
  let influx: Influx;
  let app: ApiApp;
  let dir: string;
  let logs: string[] = [];

  beforeAll(async () => {
    [svc.redis, svc.mqtt, svc.influx] = await Promise.all([startRedis(), startMosquitto(), startInflux()]);
    dir = mkdtempSync(join(tmpdir(), 'mf-dr-pipeline-'));
    const env = serviceEnv(
      { redis: svc.redis, mqtt: svc.mqtt, influx: svc.influx },
      {
        INFLUX_API: 'v1',
        INFLUX_BUCKET: uniquePrefix('drpipe'),
        MF_TIMEZONE: ZONE,
        API_TOKENS: JSON.stringify({ [DR]: { id: 'dr-operator', scopes: ['dr:write'] }, [INSIGHTS]: { id: 'dr-analyst', scopes: ['insights:read'] } }),
      },
    );
    const { log, lines } = memoryLogger('warn');
    logs = lines;
    const { ctx, config } = roleContext(env, log);
    redis = createRedis(config.redis.url, 'test');
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    const records = fleet.customers.filter((c) => checkCustomer.Check(c));
    expect(records).toHaveLength(24);
    await registry.upsertMeters(records);
    roles.push(await startIngest(ctx));
    roles.push(await startStream(ctx));
    influx = await createInflux(config.influx, log);
    app = await buildApp({ config, log, metrics: ctx.metrics, redis, influx, registry }, { docs: false });
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    for (const r of roles.reverse()) await r.close();
    await influx?.close();
    if (redis) await closeRedis(redis);
    await Promise.all([svc.redis?.destroy(), svc.mqtt?.destroy(), svc.influx?.destroy()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('settles each responder within 10 % of its true cut and each non-responder near zero', async () => {
    const started = Date.now();
    const summary = await runSimulation({ scenario, mqttUrl: svc.mqtt?.url, outDir: dir, backfill: true, respond: false, clientId: 'dr-pipeline-sim' });
    expect(summary.readings).toBe(24 * ((scenario.toMs - scenario.fromMs) / 900_000 + 1));
    // Every reading is in a stream once its PUBACK is back; the worker deletes entries once their intervals are in
    // InfluxDB. Drained twice in a row: nothing left to write.
    const deadline = Date.now() + 240_000;
    for (let drained = 0; drained < 2; ) {
      if (Date.now() > deadline) throw new Error(`pipeline did not drain: ${logs.slice(-10).join('\n')}`);
      await new Promise((r) => setTimeout(r, 1000));
      const lens = await Promise.all([0, 1, 2, 3].map((sh) => redis.xlen(keys.readings(sh))));
      drained = lens.every((n) => n === 0) ? drained + 1 : 0;
    }
    const pipelineMs = Date.now() - started;

    const [truth, ...more] = readFileSync(join(dir, 'dr.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as DrTruthRecord);
    if (truth === undefined) throw new Error('dr.jsonl is empty');
    expect(more).toEqual([]);
    expect(truth).toMatchObject({ id: 'dr-afternoon', complete: true, participantCount: 12, responderCount: 6, startMs: EVENT.start.toMillis() });

    const auth = (token: string) => ({ authorization: `Bearer ${token}` });
    const created = await app.inject({
      method: 'POST',
      url: '/api/v1/dr/events',
      headers: auth(DR),
      payload: { start: utc(EVENT.start), end: utc(EVENT.end), customerIds: truth.participants.map((p) => p.customerId), requestedReductionKw: 100 },
    });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ notified: false, participants: 12, replayed: false });
    const res = await app.inject({ method: 'GET', url: `/api/v1/dr/events/${created.json().id}/settlement`, headers: auth(INSIGHTS) });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ status: 'final', timezone: ZONE });
    const settled = new Map((body.participants as Settled[]).map((p) => [p.customerId, p]));

    const rows = truth.participants.map((t) => {
      const s = settled.get(t.customerId);
      if (s === undefined) throw new Error(`${t.customerId} is not in the settlement`);
      return { t, s, error: t.responded ? s.reductionWh / t.reductionWh - 1 : s.reductionWh / s.baselineWh };
    });
    const pct = (x: number) => `${(x * 100).toFixed(2)} %`;
    console.info(
      [
        `dr-pipeline: event ${truth.start}–${truth.end} (${ZONE} ${EVENT.start.toFormat('ccc yyyy-MM-dd HH:mm')}), ${summary.readings} readings, pipeline ${(pipelineMs / 1000).toFixed(1)} s`,
        'customer  class       responded  cut    counterfactualWh  baselineWh  actualWh  trueReductionWh  settledReductionWh  error',
        ...rows.map(({ t, s, error }) =>
          [
            t.customerId.padEnd(9),
            t.customerClass.padEnd(11),
            String(t.responded).padEnd(10),
            t.cut.toFixed(2).padEnd(6),
            t.counterfactualWh.toFixed(0).padStart(16),
            s.baselineWh.toFixed(0).padStart(11),
            String(s.actualWh).padStart(9),
            t.reductionWh.toFixed(0).padStart(16),
            s.reductionWh.toFixed(0).padStart(19),
            `  ${pct(error)} ${t.responded ? 'of the true cut' : 'of the baseline'}`,
          ].join(' '),
        ),
        `worst responder error ${pct(Math.max(...rows.filter((r) => r.t.responded).map((r) => Math.abs(r.error))))}, ` +
          `worst non-responder ${pct(Math.max(...rows.filter((r) => !r.t.responded).map((r) => Math.abs(r.error))))} of its baseline`,
      ].join('\n'),
    );

    for (const { t, s } of rows) {
      // What the intervals measured is what the registers counted, to the Wh; only the baseline is estimated.
      expect({ customer: t.customerId, quality: s.quality, meters: s.meterIds, actualWh: s.actualWh, likeDays: s.selectedDays.length }).toEqual({
        customer: t.customerId,
        quality: 'ok',
        meters: [t.meterId],
        actualWh: t.actualWh,
        likeDays: 4,
      });
      if (t.responded) {
        expect(t.cut).toBe(CUT);
        expect(Math.abs(s.reductionWh - t.reductionWh)).toBeLessThanOrEqual(RESPONDER_TOLERANCE * t.reductionWh);
      } else {
        expect(t.reductionWh).toBe(0);
        expect(Math.abs(s.reductionWh)).toBeLessThanOrEqual(NON_RESPONDER_BOUND * s.baselineWh);
      }
    }
  }, 600_000);
});
