import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type AlertsHandle, startAlerts } from '../../src/alerts/main.js';
import { type ApiApp, buildApp } from '../../src/api/app.js';
import { AlertsConfig } from '../../src/contracts/config-alerts.js';
import { DetectionConfig } from '../../src/contracts/config-detection.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import type { CustomerRecord } from '../../src/contracts/registry.js';
import { dayWindow, localDay, localParts } from '../../src/domain/local-time.js';
import { type AppConfig, loadConfig, loadSection } from '../../src/shared/config.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { int, lp } from '../../src/shared/line-protocol.js';
import { createLogger } from '../../src/shared/logger.js';
import { createMetrics } from '../../src/shared/metrics.js';
import { closeRedis, createRedis } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { calendarAt, expectedLoadW, type LoadTraits } from '../../simulators/profiles.js';
import { Rng } from '../../simulators/prng.js';
import { type LocalService, startInflux, startRedis, uniquePrefix } from '../helpers/services.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/**
 * Demand response end to end against real Redis, InfluxDB and the alerts role's notify worker. A simulated fleet
 * (the simulators' commercial profile, seeded day and interval noise) has five weeks of 15-minute history written as
 * the stream worker writes `interval` points; on the event day two sites cut 40 % of their load in the window and one
 * does not. The counterfactual is known, so each settlement is checked against the true cut. Dates are relative to
 * today (events recorded after the fact must be at most `maxPastDays` old); the zone is Europe/Madrid.
 */

const ZONE = 'Europe/Madrid';
const M15 = 15 * 60_000;
const H = 3_600_000;
const DAY = 86_400_000;
const DR = 'dr-writer-token-0001';
const INSIGHTS = 'dr-insights-token-01';
const ADMIN = 'dr-admin-token-00001';
const BILLING = 'dr-billing-token-001';
const SECRET = 'dr-webhook-secret-0123456789';
const CUT = 0.4;

const holidays = new Set(loadSection('detection', DetectionConfig, {}).holidays?.calendars['ES-MD'] ?? []);
const isWeekday = (day: string): boolean => {
  const wd = new Date(`${day}T12:00:00Z`).getUTCDay();
  return wd >= 1 && wd <= 5 && !holidays.has(day);
};
/** The latest working day (Mon-Fri, not a holiday) at or before `day` with one before it too. */
function workingDayAtOrBefore(day: string): string {
  let d = day;
  while (!isWeekday(d)) d = localDay('UTC', Date.parse(`${d}T00:00:00Z`) - DAY);
  return d;
}
const shiftDay = (day: string, n: number): string => localDay('UTC', Date.parse(`${day}T00:00:00Z`) + n * DAY);
/** Epoch ms of local `hour`:00 on `day` in ZONE. */
const atLocal = (day: string, hour: number): number => DateTime.fromISO(`${day}T${String(hour).padStart(2, '0')}:00`, { zone: ZONE }).toMillis();

const TODAY = localDay(ZONE, Date.now());
/** The event day: a working day about a week ago; an earlier event two working days before it. */
const EVENT_DAY = workingDayAtOrBefore(shiftDay(TODAY, -7));
const EARLIER_DAY = workingDayAtOrBefore(shiftDay(EVENT_DAY, -2));
const HISTORY_FROM = shiftDay(EVENT_DAY, -35);
/** Midday peak of the commercial profile, 12:00-14:00 local. */
const EVENT = { startMs: atLocal(EVENT_DAY, 12), endMs: atLocal(EVENT_DAY, 14) };
const EARLIER = { startMs: atLocal(EARLIER_DAY, 12), endMs: atLocal(EARLIER_DAY, 14) };

interface Site {
  customerId: string;
  meters: { meterId: string; share: number }[];
  feederId: string;
  transformerId: string;
  traits: LoadTraits;
  seed: string;
  /** Share cut in each event window it takes part in. */
  cut: number;
  /** Local dates of the events it takes part in. */
  events: { startMs: number; endMs: number }[];
}

const commercial = (meanW: number): LoadTraits => ({ profile: 'commercial', class: 'commercial', meanW, hourShift: 0 });
const SITES: Site[] = [
  // Two meters at one site: the settlement sums them.
  {
    customerId: 'C-CUT',
    meters: [
      { meterId: 'M-CUT-1', share: 0.6 },
      { meterId: 'M-CUT-2', share: 0.4 },
    ],
    feederId: 'F-1',
    transformerId: 'T-1',
    traits: commercial(30_000),
    seed: 'cut',
    cut: CUT,
    events: [EARLIER, EVENT],
  },
  {
    customerId: 'C-STAY',
    meters: [{ meterId: 'M-STAY', share: 1 }],
    feederId: 'F-1',
    transformerId: 'T-1',
    traits: commercial(20_000),
    seed: 'stay',
    cut: 0,
    events: [EARLIER, EVENT],
  },
  {
    customerId: 'C-OTHER',
    meters: [{ meterId: 'M-OTHER', share: 1 }],
    feederId: 'F-2',
    transformerId: 'T-2',
    traits: commercial(50_000),
    seed: 'other',
    cut: CUT,
    events: [EVENT],
  },
];

const record = (s: Site, meterId: string): CustomerRecord => ({
  meterId,
  customerId: s.customerId,
  class: 'commercial',
  tariff: 'default',
  contractKw: 100,
  feederId: s.feederId,
  transformerId: s.transformerId,
  hasPv: false,
  intervalMinutes: 15,
});

/** Commercial-site noise: 1 % from day to day, 2.5 % per quarter hour. */
const NOISE = { day: 0.01, interval: 0.025 };

/** Per site: the Wh each meter measured per interval start, and the true cut in each event window. */
function simulate(s: Site): { lines: string[]; trueCutWh: Map<number, number> } {
  const rng = new Rng('dr-api', s.seed);
  const lines: string[] = [];
  const trueCutWh = new Map<number, number>();
  const from = dayWindow(ZONE, HISTORY_FROM).startMs;
  const to = dayWindow(ZONE, TODAY).startMs;
  const regs = new Map(s.meters.map((m) => [m.meterId, 1_000_000]));
  let dayKey = -1;
  let dayFactor = 1;
  for (let t = from; t < to; t += M15) {
    const cal = calendarAt(t + M15 / 2, ZONE);
    if (cal.dayKey !== dayKey) {
      dayKey = cal.dayKey;
      dayFactor = 1 + NOISE.day * rng.normal();
    }
    const counterfactualW = expectedLoadW(s.traits, cal, 1) * dayFactor * (1 + NOISE.interval * rng.normal());
    const ev = s.events.find((e) => t >= e.startMs && t < e.endMs);
    const factor = ev === undefined ? 1 : 1 - s.cut;
    for (const m of s.meters) {
      const wh = Math.round((counterfactualW * m.share * factor) / 4);
      const cfWh = Math.round((counterfactualW * m.share) / 4);
      if (ev !== undefined) trueCutWh.set(ev.startMs, (trueCutWh.get(ev.startMs) ?? 0) + cfWh - wh);
      const reg = (regs.get(m.meterId) ?? 0) + wh;
      regs.set(m.meterId, reg);
      lines.push(
        lp(
          'interval',
          { meter: m.meterId, feeder: s.feederId, transformer: s.transformerId, class: 'commercial', band: 'x' },
          { wh: int(wh), export_wh: int(0), demand_w: wh * 4, register_wh: int(reg), estimated: false },
          t,
        ),
      );
    }
  }
  return { lines, trueCutWh };
}

/** Transformer load for the forecast: weekdays 100 kW with 200 kW from 17:00 to 19:00 local, weekends 50 kW. */
function loadLines(): string[] {
  const out: string[] = [];
  for (let t = dayWindow(ZONE, shiftDay(TODAY, -30)).startMs; t < dayWindow(ZONE, TODAY).startMs + DAY; t += M15) {
    const p = localParts(ZONE, t);
    const kw = (tid: string) => {
      const base = p.weekday >= 5 || holidays.has(localDay(ZONE, t)) ? 50 : p.hour === 17 || p.hour === 18 ? 200 : 100;
      return tid === 'T-1' ? base : base / 2;
    };
    out.push(lp('feeder_load', { feeder: 'F-1', transformer: 'T-1' }, { demand_kw: kw('T-1') }, t));
    out.push(lp('feeder_load', { feeder: 'F-2', transformer: 'T-2' }, { demand_kw: kw('T-2') }, t));
    out.push(lp('system_load', {}, { demand_kw: kw('T-1') + kw('T-2') }, t));
  }
  return out;
}

async function waitFor(what: string, probe: () => boolean, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface ParticipantBody {
  customerId: string;
  meterIds: string[];
  quality: string;
  baselineWh: number;
  actualWh: number;
  reductionWh: number;
  cutShare: number;
  requestedWh: number | null;
  performance: number;
  performanceBasis: string;
  excludedDays: { day: string; reason: string }[];
  selectedDays: string[];
}

describe('demand response API (real Redis, InfluxDB, notify worker)', () => {
  let redisSrv: LocalService;
  let influxSrv: LocalService;
  let redis: Redis;
  let influx: Influx;
  let app: ApiApp;
  let alerts: AlertsHandle;
  let receiver: WebhookReceiver;
  let config: AppConfig;
  let dir: string;
  const trueCut = new Map<string, Map<number, number>>();
  const log = createLogger({ level: 'silent' });

  beforeAll(async () => {
    [redisSrv, influxSrv] = await Promise.all([startRedis(), startInflux()]);
    receiver = await startWebhookReceiver(SECRET);
    config = loadConfig({
      REDIS_URL: redisSrv.url,
      INFLUX_URL: influxSrv.url,
      INFLUX_API: 'v1',
      INFLUX_BUCKET: uniquePrefix('dr'),
      MF_TIMEZONE: ZONE,
      MF_INSTANCE: 'dr-test',
      API_TOKENS: JSON.stringify({
        [DR]: { id: 'dr-operator', scopes: ['dr:write'] },
        [INSIGHTS]: { id: 'dr-analyst', scopes: ['insights:read'] },
        [ADMIN]: { id: 'dr-admin', scopes: ['admin'] },
        [BILLING]: { id: 'dr-billing', scopes: ['billing:read'] },
      }),
      MQTT_URL: 'mqtt://127.0.0.1:1',
    });
    influx = await createInflux(config.influx, log);
    await influx.ensureDatabase();
    redis = createRedis(config.redis.url, 'test');
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    await registry.upsertMeters(SITES.flatMap((s) => s.meters.map((m) => record(s, m.meterId))));
    // A customer read hourly: an event on the quarter hours cannot be settled on its intervals.
    const stay = SITES.find((s) => s.customerId === 'C-STAY');
    if (stay === undefined) throw new Error('fixture');
    await registry.upsertMeters([{ ...record(stay, 'M-HOURLY'), customerId: 'C-HOURLY', feederId: 'F-3', transformerId: 'T-3', intervalMinutes: 60 }]);
    await registry.upsertTransformers([
      { transformerId: 'T-1', feederId: 'F-1', ratingKva: 400 },
      { transformerId: 'T-2', feederId: 'F-2', ratingKva: 400 },
    ]);
    const writer = influx.writer({ batchSize: 10_000 });
    for (const s of SITES) {
      const sim = simulate(s);
      writer.write(sim.lines);
      trueCut.set(s.customerId, sim.trueCutWh);
    }
    writer.write(loadLines());
    await writer.flush();

    // config/dr.yaml and config/alerts.yaml as a deployment would set them: DR notices go to webhook "dr-ops".
    dir = mkdtempSync(join(tmpdir(), 'mf-dr-'));
    const webhooks = [{ name: 'dr-ops', url: receiver.url, secretEnv: 'MF_DR_OPS_SECRET' }];
    writeFileSync(join(dir, 'dr.yaml'), JSON.stringify({ notify: { webhooks: ['dr-ops'] } }));
    writeFileSync(join(dir, 'alerts.yaml'), JSON.stringify({ webhooks }));
    vi.stubEnv('MF_CONFIG', dir);
    const alertsCfg: AlertsConfig = { ...loadSection('alerts', AlertsConfig), influx: { enabled: false } };
    alerts = await startAlerts({ config, log, metrics: createMetrics() }, { alerts: alertsCfg, env: { MF_DR_OPS_SECRET: SECRET } });
    app = await buildApp({ config, log, metrics: createMetrics(), redis, influx, registry }, { docs: true });
    await app.ready();
    vi.unstubAllEnvs();
  }, 180_000);

  afterAll(async () => {
    vi.unstubAllEnvs();
    await app?.close();
    await alerts?.close();
    await receiver?.close();
    await influx?.close();
    if (redis) await closeRedis(redis);
    await Promise.all([redisSrv?.destroy(), influxSrv?.destroy()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const auth = (token: string | null) => (token === null ? {} : { authorization: `Bearer ${token}` });
  const get = (url: string, token: string | null = INSIGHTS) => app.inject({ method: 'GET', url, headers: auth(token) });
  const post = (body: object, token: string | null = DR, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: '/api/v1/dr/events', headers: { ...auth(token), ...headers }, payload: body });
  const iso = (ms: number) => new Date(ms).toISOString();
  const ids: Record<string, string> = {};

  it('records events after the fact: a feeder earlier, a customer list and a transformer on the event day; none is notified', async () => {
    const earlier = await post({ start: iso(EARLIER.startMs), end: iso(EARLIER.endMs), feederId: 'F-1', requestedReductionKw: 10 });
    expect(earlier.statusCode).toBe(201);
    expect(earlier.json()).toMatchObject({ notified: false, participants: 2, replayed: false });
    const list = await post({ start: iso(EVENT.startMs), end: iso(EVENT.endMs), customerIds: ['C-STAY', 'C-CUT'], requestedReductionKw: 12 });
    expect(list.statusCode).toBe(201);
    const tr = await post({ start: iso(EVENT.startMs), end: iso(EVENT.endMs), transformerId: 'T-2', requestedReductionKw: 20 });
    expect(tr.statusCode).toBe(201);
    ids.earlier = earlier.json().id;
    ids.event = list.json().id;
    ids.transformer = tr.json().id;
    expect(ids.event).toMatch(/^[A-Za-z0-9_-]{22}$/);

    const view = (await get(`/api/v1/dr/events/${ids.event}`)).json();
    expect(view).toMatchObject({
      id: ids.event,
      start: iso(EVENT.startMs),
      end: iso(EVENT.endMs),
      selector: { customerIds: ['C-STAY', 'C-CUT'] },
      customerIds: ['C-CUT', 'C-STAY'],
      requestedReductionKw: 12,
      createdBy: 'dr-operator',
      notified: false,
      recordedAfter: true,
    });
    expect((await get(`/api/v1/dr/events/${ids.earlier}`)).json()).toMatchObject({ selector: { feederId: 'F-1' }, customerIds: ['C-CUT', 'C-STAY'] });
    expect((await get(`/api/v1/dr/events/${ids.transformer}`)).json()).toMatchObject({ selector: { transformerId: 'T-2' }, customerIds: ['C-OTHER'] });
  });

  it('settles the 40 % cutter within 10 % of its true cut and the site that did not cut near zero, skipping the earlier event day', async () => {
    const res = await get(`/api/v1/dr/events/${ids.event}/settlement`);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ eventId: ids.event, status: 'final', timezone: ZONE, start: iso(EVENT.startMs), end: iso(EVENT.endMs) });
    expect(body.method).toBe('High 4 of 5 (weekday), High 2 of 3 (weekend/holiday), additive same-day adjustment over 3 h ending 1 h before, 45-day search');
    const [cut, stay] = body.participants as ParticipantBody[];
    if (cut === undefined || stay === undefined) throw new Error('two participants expected');
    const truth = trueCut.get('C-CUT')?.get(EVENT.startMs) ?? 0;
    console.log(
      `dr settlement: C-CUT true cut ${truth} Wh, settled ${cut.reductionWh.toFixed(0)} Wh (${((cut.reductionWh / truth - 1) * 100).toFixed(2)} %), cutShare ${cut.cutShare.toFixed(4)}; ` +
        `C-STAY reduction ${stay.reductionWh.toFixed(0)} Wh of baseline ${stay.baselineWh.toFixed(0)} (${((stay.reductionWh / stay.baselineWh) * 100).toFixed(2)} %)`,
    );
    expect(cut).toMatchObject({ customerId: 'C-CUT', meterIds: ['M-CUT-1', 'M-CUT-2'], quality: 'ok', performanceBasis: 'requested' });
    expect(Math.abs(cut.reductionWh - truth)).toBeLessThanOrEqual(0.1 * truth);
    expect(Math.abs(cut.cutShare - CUT)).toBeLessThanOrEqual(0.1 * CUT);
    expect(stay).toMatchObject({ customerId: 'C-STAY', quality: 'ok' });
    expect(Math.abs(stay.reductionWh)).toBeLessThanOrEqual(0.03 * stay.baselineWh);
    // The earlier event day is never a like day of its participants.
    for (const p of [cut, stay]) {
      expect(p.excludedDays).toContainEqual({ day: EARLIER_DAY, reason: 'event' });
      expect(p.selectedDays).not.toContain(EARLIER_DAY);
      expect(p.selectedDays.length).toBe(4);
    }
    // Requested 12 kW × 2 h = 24000 Wh, shared by baseline; performance = reduction ÷ that share.
    expect(body.totals.requestedWh).toBe(24_000);
    const shares = (cut.requestedWh ?? 0) + (stay.requestedWh ?? 0);
    expect(shares).toBeCloseTo(24_000, 6);
    expect(cut.requestedWh).toBeCloseTo((24_000 * cut.baselineWh) / (cut.baselineWh + stay.baselineWh), 6);
    expect(cut.performance).toBeCloseTo(cut.reductionWh / (cut.requestedWh ?? 1), 9);
    expect(body.totals).toMatchObject({ participants: 2, settled: 2, insufficientHistory: 0, missingEventData: 0, performanceBasis: 'requested' });
    expect(body.totals.reductionWh).toBeCloseTo(cut.reductionWh + stay.reductionWh, 6);
  });

  it('a transformer selection settles its one customer from the stored data', async () => {
    const body = (await get(`/api/v1/dr/events/${ids.transformer}/settlement`)).json();
    const [other] = body.participants as ParticipantBody[];
    const truth = trueCut.get('C-OTHER')?.get(EVENT.startMs) ?? 0;
    expect(other).toMatchObject({ customerId: 'C-OTHER', quality: 'ok' });
    expect(Math.abs((other?.reductionWh ?? 0) - truth)).toBeLessThanOrEqual(0.1 * truth);
    // C-OTHER took no part in the earlier event: that day may be one of its like days.
    expect(other?.excludedDays.some((d) => d.reason === 'event')).toBe(false);
  });

  it('a participant whose interval does not divide the window is unsettleable, and does not hold the settlement provisional', async () => {
    const start = EVENT.startMs + 15 * 60_000;
    const created = await post({ start: iso(start), end: iso(start + 2 * H), customerIds: ['C-CUT', 'C-HOURLY'], requestedReductionKw: 5 });
    expect(created.statusCode).toBe(201);
    const body = (await get(`/api/v1/dr/events/${created.json().id}/settlement`)).json();
    const byId = new Map((body.participants as ParticipantBody[]).map((p) => [p.customerId, p]));
    expect(byId.get('C-CUT')?.quality).toBe('ok');
    expect(byId.get('C-HOURLY')).toMatchObject({ quality: 'unsettleable', reductionWh: 0, performance: 0 });
    expect(body.status).toBe('final');
    expect(body.totals).toMatchObject({ participants: 2, settled: 1, missingEventData: 0, unsettleable: 1 });
  });

  it('notifies each participant of a coming event once, signed, through the notify worker; a repeat enqueues nothing', async () => {
    const start = Math.ceil((Date.now() + 2 * H) / M15) * M15;
    const body = { start: iso(start), end: iso(start + H), customerIds: ['C-CUT', 'C-STAY'], requestedReductionKw: 5 };
    const res = await post(body, DR, { 'idempotency-key': 'op-call-42' });
    expect(res.statusCode).toBe(201);
    const { id, notified } = res.json();
    expect(notified).toBe(true);
    await waitFor('two DR deliveries', () => receiver.deliveries.size >= 2);
    const again = await post(body, DR, { 'idempotency-key': 'op-call-42' });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual({ id, notified: true, participants: 2, replayed: true });
    // Same key, other request: a conflict.
    const other = await post({ ...body, requestedReductionKw: 6 }, DR, { 'idempotency-key': 'op-call-42' });
    expect(other.statusCode).toBe(409);
    expect(other.json().field).toBe('headers.idempotency-key');
    await new Promise((r) => setTimeout(r, 500));

    expect([...receiver.deliveries.keys()].sort()).toEqual([`dr.${id}.C-CUT`, `dr.${id}.C-STAY`]);
    expect(receiver.requests.length).toBe(2);
    expect(receiver.requests.every((r) => r.verified && r.status === 200)).toBe(true);
    expect(receiver.deliveries.get(`dr.${id}.C-CUT`)?.json).toEqual({
      type: 'dr.event',
      idempotencyKey: `dr.${id}.C-CUT`,
      at: expect.any(String),
      event: { id, start: iso(start), end: iso(start + H), requestedReductionKw: 5, participants: 2 },
      participant: { customerId: 'C-CUT', meterIds: ['M-CUT-1', 'M-CUT-2'] },
    });
    // Not over yet: nothing to settle.
    const early = await get(`/api/v1/dr/events/${id}/settlement`);
    expect(early.statusCode).toBe(409);
    // A client-given id is idempotent too.
    const own = { ...body, customerIds: ['C-OTHER'], id: 'ops-2026-event-7' };
    expect((await post(own)).statusCode).toBe(201);
    expect((await post(own)).json()).toEqual({ id: 'ops-2026-event-7', notified: true, participants: 1, replayed: true });
    await waitFor('the third delivery', () => receiver.deliveries.size >= 3);
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.requests.length).toBe(3);
    expect((await post({ ...own, requestedReductionKw: 9 })).statusCode).toBe(409);
  });

  it('lists events, latest start first, with a cursor', async () => {
    const first = (await get('/api/v1/dr/events?limit=2')).json();
    expect(first.items.map((e: { id: string }) => e.id)).toHaveLength(2);
    expect(first.nextCursor).toBe('2');
    const second = (await get(`/api/v1/dr/events?limit=10&cursor=${first.nextCursor}`)).json();
    const starts = [...first.items, ...second.items].map((e: { start: string }) => Date.parse(e.start));
    expect(starts).toEqual([...starts].sort((a, b) => b - a));
    expect(starts.length).toBe(6); // three after the fact, the unsettleable one, two coming
    expect(second.nextCursor).toBe(null);
  });

  it('forecasts tomorrow from the recent like days: the evening peak, and the window where an event would pay', async () => {
    const day = workingDayAtOrBefore(shiftDay(TODAY, 7));
    const fleet = (await get(`/api/v1/dr/forecast?day=${day}`)).json();
    expect(fleet).toMatchObject({ day, timezone: ZONE, scope: { kind: 'fleet', id: null }, dayType: 'weekday', intervalMinutes: 15, trendFactor: 1 });
    expect(fleet.likeDays).toHaveLength(10);
    expect(fleet.peak).toEqual({ start: iso(atLocal(day, 17)), expectedKw: 300 });
    expect([fleet.typicalPeakKw, fleet.thresholdKw, fleet.thresholdBasis]).toEqual([300, 285, 'peakShare']);
    // 17:00-19:00 local at 300 kW, 15 kW above 285 for 2 h.
    expect(fleet.windows).toEqual([{ start: iso(atLocal(day, 17)), end: iso(atLocal(day, 19)), peakKw: 300, excessKwh: 30 }]);
    const feeder = (await get(`/api/v1/dr/forecast?day=${day}&feederId=F-1`)).json();
    expect([feeder.scope, feeder.peak.expectedKw]).toEqual([{ kind: 'feeder', id: 'F-1' }, 200]);
    const transformer = (await get(`/api/v1/dr/forecast?day=${day}&transformerId=T-2`)).json();
    expect([transformer.scope, transformer.peak.expectedKw]).toEqual([{ kind: 'transformer', id: 'T-2' }, 100]);
    expect((await get(`/api/v1/dr/forecast?day=${day}&transformerId=T-9`)).statusCode).toBe(404);
  });

  it('scopes: dr:write creates, insights:read reads; neither does the other', async () => {
    const body = { start: iso(EVENT.startMs), end: iso(EVENT.endMs), customerIds: ['C-CUT'], requestedReductionKw: 1 };
    expect((await post(body, null)).statusCode).toBe(401);
    expect((await post(body, 'not-a-known-token')).statusCode).toBe(401);
    expect((await post(body, INSIGHTS)).statusCode).toBe(403);
    expect((await post(body, BILLING)).statusCode).toBe(403);
    expect((await post(body, ADMIN)).statusCode).toBe(201);
    for (const url of [
      '/api/v1/dr/events',
      `/api/v1/dr/events/${ids.event}`,
      `/api/v1/dr/events/${ids.event}/settlement`,
      '/api/v1/dr/forecast?day=2026-01-05',
    ]) {
      expect((await get(url, null)).statusCode).toBe(401);
      expect((await get(url, DR)).statusCode).toBe(403);
      expect((await get(url, ADMIN)).statusCode).toBe(200);
    }
    expect((await get('/api/v1/dr/events/unknown-event-id')).statusCode).toBe(404);
  });

  const ok = () => ({ start: iso(EVENT.startMs), end: iso(EVENT.endMs), customerIds: ['C-CUT'], requestedReductionKw: 1 });
  it.each([
    ['no selection', { customerIds: undefined }, 'body.customerIds'],
    ['two selections', { feederId: 'F-1' }, 'body.feederId'],
    ['an unknown customer', { customerIds: ['C-CUT', 'C-NOBODY'] }, 'body.customerIds.1'],
    ['an empty customer list', { customerIds: [] }, 'body.customerIds'],
    ['an unknown feeder', { customerIds: undefined, feederId: 'F-9' }, 'body.feederId'],
    ['an unknown transformer', { customerIds: undefined, transformerId: 'T-9' }, 'body.transformerId'],
    ['a start off the grid', { start: iso(EVENT.startMs + 60_000) }, 'body.start'],
    ['a time without an offset', { start: '2026-11-18T12:00:00' }, 'body.start'],
    ['not a time', { end: 'tomorrow' }, 'body.end'],
    ['end before start', { end: iso(EVENT.startMs - M15) }, 'body.end'],
    ['end at start', { end: iso(EVENT.startMs) }, 'body.end'],
    ['too long', { end: iso(EVENT.startMs + 9 * H) }, 'body.end'],
    [
      'too far ahead',
      { start: iso(Date.now() + 30 * DAY - ((Date.now() + 30 * DAY) % M15)), end: iso(Date.now() + 30 * DAY - ((Date.now() + 30 * DAY) % M15) + H) },
      'body.start',
    ],
    ['too far back', { start: iso(EVENT.startMs - 200 * DAY), end: iso(EVENT.startMs - 200 * DAY + H) }, 'body.start'],
    ['a negative request', { requestedReductionKw: -1 }, 'body.requestedReductionKw'],
    ['an unknown field', { extra: 1 }, 'body'],
    ['a bad id', { id: 'a b' }, 'body.id'],
  ])('400 for %s names %s', async (_what, change, field) => {
    const res = await post({ ...ok(), ...change });
    expect(res.statusCode).toBe(400);
    const got = res.json().field ?? '';
    expect(field === 'body' ? got.startsWith('body') : got).toBe(field === 'body' ? true : field);
  });

  it('400 for a bad forecast day names it', async () => {
    for (const q of ['day=2026-02-30', 'day=tomorrow', '']) expect((await get(`/api/v1/dr/forecast?${q}`)).json().field).toBe('querystring.day');
    expect((await get('/api/v1/dr/forecast?day=2026-01-05&feederId=F-1&transformerId=T-1')).json().field).toBe('querystring.transformerId');
  });

  it.each([
    ['weekday High 5 of 4', { cbl: { weekday: { x: 5, y: 4 } } }, 'config/dr.yaml: dr.cbl.weekday: expected cbl.weekday: need 1 ≤ x ≤ y, got x=5 y=4'],
    ['an adjustment off the grid', { cbl: { adjustment: { windowHours: 0.1 } } }, 'config/dr.yaml: dr.cbl.adjustment.windowHours'],
    [
      'an unknown webhook',
      { notify: { webhooks: ['nowhere'] } },
      'config/dr.yaml: dr.notify.webhooks.0: expected a webhook of config/alerts.yaml (none), got "nowhere"',
    ],
  ])('a bad config/dr.yaml fails at start, named: %s', async (_what, dr, message) => {
    const bad = mkdtempSync(join(tmpdir(), 'mf-dr-bad-'));
    writeFileSync(join(bad, 'dr.yaml'), JSON.stringify(dr));
    vi.stubEnv('MF_CONFIG', bad);
    try {
      await expect(
        buildApp({
          config,
          log,
          metrics: createMetrics(),
          redis,
          influx,
          registry: new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults),
        }),
      ).rejects.toThrow(message);
    } finally {
      vi.unstubAllEnvs();
      rmSync(bad, { recursive: true, force: true });
    }
  });

  it('is in the OpenAPI document', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
    expect(Object.keys(doc.paths['/api/v1/dr/events'] ?? {}).sort()).toEqual(['get', 'post']);
    for (const p of ['/api/v1/dr/events/{id}', '/api/v1/dr/events/{id}/settlement', '/api/v1/dr/forecast'])
      expect(Object.keys(doc.paths[p] ?? {})).toEqual(['get']);
  });
});
