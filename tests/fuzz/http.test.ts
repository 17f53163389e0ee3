import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type ApiApp } from '../../src/api/app.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import { loadConfig, loadSection } from '../../src/shared/config.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { createMetrics } from '../../src/shared/metrics.js';
import { closeRedis, createRedis } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { Rng } from '../../simulators/prng.js';
import { type ReadResponder, startReadResponder } from '../../simulators/responder.js';
import { memoryLogger } from '../helpers/pipeline.js';
import { type LocalService, startInflux, startMosquitto, startRedis } from '../helpers/services.js';

/**
 * Hostile HTTP requests at every route and parameter of the API (app.inject, real Redis, InfluxDB and Mosquitto
 * behind it), with good requests beside them. Seeded: FUZZ_SEED replays a run, FUZZ_HTTP_COUNT sets the number.
 */
const SEED = process.env.FUZZ_SEED ?? '20261206';
const COUNT = Number(process.env.FUZZ_HTTP_COUNT ?? 5000);
const GOOD_EVERY = 5;
/** Live heap after a full GC may grow this much over 5,000 requests (rate-limit LRU, audit buffer, caches); a leak grows more. */
const MAX_HEAP_GROWTH = 64 * 1024 * 1024;
/** Peak resident memory: bodies up to the import limit are parsed whole, and V8 collects lazily. */
const MAX_RSS = 1536 * 1024 * 1024;

v8.setFlagsFromString('--expose-gc');
const gc: () => void = vm.runInNewContext('gc');
const liveHeap = (): number => {
  gc();
  return process.memoryUsage().heapUsed;
};

const ADMIN = 'fuzz-admin-token-0001';
const READER = 'fuzz-reader-token-0002';
const WRITER = 'fuzz-alerts-writer-0003';
const BILLING = 'fuzz-billing-reader-04';
const COMMAND = 'fuzz-meter-command-05';
const INSIGHTS = 'fuzz-insights-reader6';
const DR_WRITER = 'fuzz-dr-writer-token7';
const TOKEN_OF = {
  admin: ADMIN,
  any: READER,
  'alerts:write': WRITER,
  'billing:read': BILLING,
  'meters:command': COMMAND,
  'insights:read': INSIGHTS,
  'dr:write': DR_WRITER,
  none: undefined,
} as const;
type Need = keyof typeof TOKEN_OF;

const METERS = Array.from({ length: 10 }, (_, i) => `M-${String(i).padStart(3, '0')}`);
const customer = (meterId: string) => ({
  meterId,
  customerId: `C-${meterId}`,
  class: 'residential',
  tariff: 'default',
  contractKw: 5,
  feederId: 'F1',
  transformerId: 'T1',
  hasPv: false,
  intervalMinutes: 15,
});

interface RouteSpec {
  name: string;
  method: 'GET' | 'POST';
  path: string;
  /** Path parameters and a good value for each. */
  params: Record<string, () => string>;
  /** Query parameters and a good value for each (undefined: left out of a good request). */
  query: Record<string, () => string | undefined>;
  need: Need;
  body?: 'records' | 'transformers' | 'action' | 'assign' | 'comment' | 'dr-event';
}

const rngGood = new Rng(SEED, 'good');
const meter = () => rngGood.pick(METERS);
const ROUTES: RouteSpec[] = [
  { name: 'healthz', method: 'GET', path: '/healthz', params: {}, query: {}, need: 'none' },
  { name: 'readyz', method: 'GET', path: '/readyz', params: {}, query: {}, need: 'none' },
  { name: 'metrics', method: 'GET', path: '/metrics', params: {}, query: {}, need: 'none' },
  { name: 'docs', method: 'GET', path: '/docs/json', params: {}, query: {}, need: 'none' },
  { name: 'customers.post', method: 'POST', path: '/api/v1/customers', params: {}, query: {}, need: 'admin', body: 'records' },
  { name: 'transformers.post', method: 'POST', path: '/api/v1/transformers', params: {}, query: {}, need: 'admin', body: 'transformers' },
  { name: 'customers.get', method: 'GET', path: '/api/v1/customers/:meterId', params: { meterId: meter }, query: {}, need: 'any' },
  { name: 'meters.get', method: 'GET', path: '/api/v1/meters/:id', params: { id: meter }, query: { intervals: () => '4' }, need: 'any' },
  {
    name: 'alerts.list',
    method: 'GET',
    path: '/api/v1/alerts',
    params: {},
    query: {
      state: () => 'open',
      type: () => 'spike',
      severity: () => 'warning',
      subject: meter,
      since: () => '2026-01-01T00:00:00Z',
      limit: () => '5',
      cursor: () => undefined,
    },
    need: 'any',
  },
  { name: 'alerts.get', method: 'GET', path: '/api/v1/alerts/:id', params: { id: () => '0000abcde-0123456789abcdef' }, query: {}, need: 'any' },
  {
    name: 'alerts.ack',
    method: 'POST',
    path: '/api/v1/alerts/:id/ack',
    params: { id: () => '0000abcde-0123456789abcdef' },
    query: {},
    need: 'alerts:write',
    body: 'action',
  },
  {
    name: 'alerts.resolve',
    method: 'POST',
    path: '/api/v1/alerts/:id/resolve',
    params: { id: () => '0000abcde-0123456789abcdef' },
    query: {},
    need: 'alerts:write',
    body: 'action',
  },
  {
    name: 'alerts.assign',
    method: 'POST',
    path: '/api/v1/alerts/:id/assign',
    params: { id: () => '0000abcde-0123456789abcdef' },
    query: {},
    need: 'alerts:write',
    body: 'assign',
  },
  {
    name: 'alerts.comment',
    method: 'POST',
    path: '/api/v1/alerts/:id/comment',
    params: { id: () => '0000abcde-0123456789abcdef' },
    query: {},
    need: 'alerts:write',
    body: 'comment',
  },
  { name: 'alerts.history', method: 'GET', path: '/api/v1/alerts/:id/history', params: { id: () => '0000abcde-0123456789abcdef' }, query: {}, need: 'any' },
  { name: 'whoami', method: 'GET', path: '/api/v1/whoami', params: {}, query: {}, need: 'any' },
  { name: 'console', method: 'GET', path: '/console/', params: {}, query: {}, need: 'none' },
  { name: 'dead-letters', method: 'GET', path: '/api/v1/notifications/dead-letters', params: {}, query: { limit: () => '10', cursor: () => '0' }, need: 'any' },
  {
    name: 'billing.reads',
    method: 'GET',
    path: '/api/v1/billing/reads',
    params: {},
    query: { from: () => '2026-11-01', to: () => '2026-11-02', meterId: meter, customerId: () => undefined, cursor: () => undefined, limit: () => '10' },
    need: 'billing:read',
  },
  {
    name: 'billing.period',
    method: 'GET',
    path: '/api/v1/billing/periods/:period/reads',
    params: { period: () => '2026-10' },
    query: { meterId: meter, customerId: () => undefined, cursor: () => undefined, limit: () => '10' },
    need: 'billing:read',
  },
  {
    name: 'tariff-advice',
    method: 'GET',
    path: '/api/v1/customers/:customerId/tariff-advice',
    params: { customerId: () => `C-${meter()}` },
    query: { from: () => '2026-11-01', to: () => '2026-11-08', shift: () => '0.3' },
    need: 'insights:read',
  },
  {
    name: 'profile',
    method: 'GET',
    path: '/api/v1/customers/:customerId/profile',
    params: { customerId: () => `C-${meter()}` },
    query: { month: () => '2026-10' },
    need: 'insights:read',
  },
  {
    name: 'profiles',
    method: 'GET',
    path: '/api/v1/insights/profiles',
    params: {},
    query: { month: () => '2026-10', format: () => undefined, limit: () => '50', cursor: () => undefined },
    need: 'insights:read',
  },
  { name: 'watchlist', method: 'GET', path: '/api/v1/insights/watchlist', params: {}, query: { month: () => '2026-10' }, need: 'insights:read' },
  {
    name: 'remote-read',
    method: 'POST',
    path: '/api/v1/meters/:id/remote-read',
    params: { id: meter },
    query: { timeoutMs: () => undefined },
    need: 'meters:command',
  },
  { name: 'dr.events.post', method: 'POST', path: '/api/v1/dr/events', params: {}, query: {}, need: 'dr:write', body: 'dr-event' },
  { name: 'dr.events.list', method: 'GET', path: '/api/v1/dr/events', params: {}, query: { limit: () => '5', cursor: () => '0' }, need: 'insights:read' },
  { name: 'dr.events.get', method: 'GET', path: '/api/v1/dr/events/:id', params: { id: () => 'no-such-event-0001' }, query: {}, need: 'insights:read' },
  {
    name: 'dr.settlement',
    method: 'GET',
    path: '/api/v1/dr/events/:id/settlement',
    params: { id: () => 'no-such-event-0001' },
    query: {},
    need: 'insights:read',
  },
  {
    name: 'dr.forecast',
    method: 'GET',
    path: '/api/v1/dr/forecast',
    params: {},
    query: { day: () => '2026-11-02', feederId: () => 'F1', transformerId: () => undefined },
    need: 'insights:read',
  },
  { name: 'audit', method: 'GET', path: '/api/v1/audit', params: {}, query: { limit: () => '5', cursor: () => undefined }, need: 'admin' },
];

/** Values that have broken parsers, queries and paths somewhere. */
const HOSTILE_VALUES = [
  '',
  ' ',
  '0',
  '-1',
  '-0',
  '1e999',
  '-1e999',
  '1E400',
  '-9e99999',
  'NaN',
  'Infinity',
  '9007199254740993',
  '1.5',
  '0x10',
  'true',
  'null',
  'undefined',
  '[]',
  '{}',
  '__proto__',
  'constructor',
  'prototype',
  "'; DROP MEASUREMENT reading; --",
  "M-001' OR meter =~ /.*/ --",
  '" OR 1=1 --',
  "\\'",
  '\\',
  'm1,foo=bar',
  'm1 value=1',
  'm1\nreading,meter=x import_wh=1i',
  '/.*/',
  '.*',
  '$where',
  '{"$gt":""}',
  'a\nb',
  '\r\n',
  '\u0000',
  '..',
  '.',
  '../../etc/passwd',
  '..%2f..%2f',
  '%00',
  '%',
  '%zz',
  '😀',
  '\u202e',
  'A'.repeat(64),
  'A'.repeat(65),
  'A'.repeat(129),
  'A'.repeat(5000),
  '<script>alert(1)</script>',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a template injection probe, on purpose
  '${7*7}',
  '2026-02-30',
  '2026-13-01',
  '9999-12-31',
  '0000-01-01',
  '2026-11-02',
  '2026-11-01T00:00:00Z',
  '275760-09-13',
  '-2026-01-01',
  '2026-1-1',
  '2026-00',
  '2026-13',
  '9999-12',
  '0000abcde-0123456789abcdef',
  'eyJhZnRlciI6Ik0tMDAxIn0',
  'eyJhZnRlciI6MX0',
  'eyJhZnRlciI6eyJfX3Byb3RvX18iOnt9fX0',
  '1700000000000-0',
  '99999999999999999999-0',
];

const AUTH_HEADERS = [
  undefined,
  '',
  'Bearer',
  'Bearer ',
  'bearer fuzz-reader-token-0002',
  'Basic ZnV6ejpmdXp6',
  'Bearer wrong-token-wrong-token',
  `Bearer ${'x'.repeat(10_000)}`,
  'Bearer fuzz-reader-token-0002 extra',
  'Bearer  fuzz-admin-token-0001',
  'Token fuzz-admin-token-0001',
  'Bearer fuzz-admin-token-000',
  'Bearer fuzz-admin-token-00011',
  'Bearer __proto__',
  'Bearer \u00ff\u00fe',
];
const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'text/csv',
  'text/plain',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/octet-stream',
  '',
  'application/json'.repeat(200),
  'application/vnd.api+json',
];
const BODIES: Array<() => string | Buffer> = [
  () => '{',
  () => '[1,',
  () => '{"a":}',
  () => '',
  () => 'null',
  () => 'true',
  () => '"a string"',
  () => '1e999',
  () => '{"__proto__":{"polluted":true}}',
  () => '[{"__proto__":{"polluted":true},"meterId":"X-1"}]',
  () => '{"constructor":{"prototype":{"polluted":true}}}',
  () => '['.repeat(10_000) + ']'.repeat(10_000),
  () => `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`,
  () => JSON.stringify(Array.from({ length: 3000 }, (_, i) => ({ meterId: `X-${i}`, junk: 'y'.repeat(10) }))),
  () => `[${'"x",'.repeat(400_000)}"x"]`,
  () => 'x'.repeat(2 * 1024 * 1024),
  () => Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x22]),
  () => 'meterId,customerId\n"unterminated,1\n',
  () => "=cmd|' /C calc'!A0,x\n",
  () => `meterId,customerId,class,tariff,contractKw,feederId,transformerId,hasPv,intervalMinutes\n${'..,C,residential,default,5,F,T,false,15\n'.repeat(3)}`,
  () => 'transformerId,feederId,ratingKva\nT1,F1,1e999\nT2,F2,-0\n',
  () =>
    JSON.stringify([
      { ...customer('X-1'), contractKw: '1e999' },
      { ...customer('..'), intervalMinutes: 7 },
      { ...customer('X-2'), class: '__proto__' },
    ]),
  () =>
    JSON.stringify([
      { transformerId: 'T-x', feederId: 'F', ratingKva: -0 },
      { transformerId: '', feederId: 'F', ratingKva: 1 },
    ]),
  () => JSON.stringify({ by: 'A'.repeat(129) }),
  () => JSON.stringify({ by: 42 }),
  () => JSON.stringify({ by: '' }),
  () => JSON.stringify({ by: "'; DROP" }),
  () => JSON.stringify({ by: ['x'] }),
  () => JSON.stringify({ extra: 1 }),
  () => '[]',
  () => '{}',
];

interface Req {
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string | Buffer;
}

/** What a hostile request varied, for the coverage check: `route.param` names. */
interface Hostile extends Req {
  route: string;
  touched: string[];
}

function enc(v: string, raw: boolean): string {
  if (raw) return v;
  try {
    return encodeURIComponent(v);
  } catch {
    return v; // a lone surrogate: sent as is
  }
}

function goodRequest(r: RouteSpec): Req {
  let path = r.path;
  for (const [k, v] of Object.entries(r.params)) path = path.replace(`:${k}`, encodeURIComponent(v()));
  const q = Object.entries(r.query)
    .map(([k, v]) => [k, v()] as const)
    .filter((kv): kv is readonly [string, string] => kv[1] !== undefined);
  const url = q.length ? `${path}?${q.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&')}` : path;
  const token = TOKEN_OF[r.need];
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  if (r.body === undefined) return { method: r.method, url, headers };
  headers['content-type'] = 'application/json';
  const payload =
    r.body === 'records'
      ? JSON.stringify([customer(meter())])
      : r.body === 'transformers'
        ? JSON.stringify([{ transformerId: 'T1', feederId: 'F1', ratingKva: 400 }])
        : r.body === 'assign'
          ? JSON.stringify({ assignee: 'J. Lineworker', by: 'fuzz', comment: 'on it' })
          : r.body === 'comment'
            ? JSON.stringify({ text: 'checked on site', by: 'fuzz' })
            : r.body === 'dr-event'
              ? drEventBody()
              : JSON.stringify({ by: 'fuzz' });
  return { method: r.method, url, headers, payload };
}

/** A demand-response event recorded after the fact (two days ago, an hour on the 15-minute grid): 201, not notified. */
function drEventBody(): string {
  const start = Math.floor((Date.now() - 2 * 86_400_000) / 900_000) * 900_000;
  const iso = (ms: number) => new Date(ms).toISOString();
  return JSON.stringify({ start: iso(start), end: iso(start + 3_600_000), customerIds: [`C-${meter()}`], requestedReductionKw: 5 });
}

class HostileRequests {
  private readonly rng: Rng;
  private readonly random: string[];

  constructor(seed: string) {
    this.rng = new Rng(seed, 'http');
    // Random text from fast-check, seeded from the same seed: any code unit, any length up to 200.
    this.random = fc.sample(fc.string({ unit: 'binary', maxLength: 200 }), { seed: new Rng(seed, 'fc').u32() | 0, numRuns: 400 });
  }

  private value(): string {
    return this.rng.chance(0.8) ? this.rng.pick(HOSTILE_VALUES) : this.rng.pick(this.random);
  }

  next(): Hostile {
    const rng = this.rng;
    const route = rng.pick(ROUTES);
    const good = goodRequest(route);
    const touched: string[] = [];
    // Mutate one to three things: a path parameter, a query parameter, the body, a header, the method.
    const things = [
      ...Object.keys(route.params).map((p) => `param:${p}`),
      ...Object.keys(route.query).map((q) => `query:${q}`),
      'query:*',
      'header:authorization',
      'header:accept',
      ...(route.method === 'POST' ? ['body', 'header:content-type'] : []),
      'method',
    ];
    const pickedThings = new Set(Array.from({ length: rng.int(1, 3) }, () => rng.pick(things)));
    let path = route.path;
    const params = Object.fromEntries(Object.entries(route.params).map(([k, v]) => [k, encodeURIComponent(v())]));
    const query = new Map(
      Object.entries(route.query)
        .map(([k, v]) => [k, v()] as const)
        .filter((kv): kv is readonly [string, string] => kv[1] !== undefined)
        .map(([k, v]) => [k, encodeURIComponent(v)]),
    );
    const extraQuery: string[] = [];
    const req: Req = { ...good, headers: { ...good.headers } };
    for (const t of pickedThings) {
      touched.push(`${route.name}.${t}`);
      const [what, name = ''] = t.split(':');
      if (what === 'param') params[name] = enc(this.value(), rng.chance(0.3));
      else if (what === 'query' && name !== '*') {
        const c = rng.next();
        if (c < 0.7) query.set(name, enc(this.value(), rng.chance(0.2)));
        else if (c < 0.85)
          query.set(name, `${enc(this.value(), false)}&${name}=${enc(this.value(), false)}`); // repeated
        else query.set(`${name}[]`, enc(this.value(), false));
      } else if (what === 'query') {
        extraQuery.push(
          rng.pick([
            '__proto__[polluted]=1',
            'constructor[prototype][polluted]=1',
            '__proto__=1',
            '%zz=%zz',
            '&&&',
            '=',
            'a=1&a=2',
            `${'k'.repeat(2000)}=v`,
            '?',
          ]),
        );
      } else if (what === 'header') {
        if (name === 'authorization') {
          const h = AUTH_HEADERS[rng.int(0, AUTH_HEADERS.length - 1)];
          if (h === undefined) delete req.headers.authorization;
          else req.headers.authorization = h;
          // A valid token without the scope the route needs.
          if (rng.chance(0.2) && route.need !== 'none' && route.need !== 'any') req.headers.authorization = `Bearer ${READER}`;
        } else if (name === 'accept') req.headers.accept = rng.pick(['text/csv', 'application/xml', '*/*', 'text/csv;q=0', 'text/html', '', 'x'.repeat(5000)]);
        else req.headers['content-type'] = rng.pick(CONTENT_TYPES);
      } else if (what === 'body') {
        req.payload = rng.pick(BODIES)();
        if (rng.chance(0.3)) req.headers['content-type'] = rng.pick(CONTENT_TYPES);
      } else if (what === 'method') req.method = rng.pick(['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', route.method === 'GET' ? 'POST' : 'GET']);
    }
    for (const [k, v] of Object.entries(params)) path = path.replace(`:${k}`, v);
    const qs = [...[...query].map(([k, v]) => `${k}=${v}`), ...extraQuery];
    req.url = qs.length ? `${path}?${qs.join('&')}` : path;
    // Bodies only where a method has one; GET/HEAD requests carry none.
    if (req.method === 'GET' || req.method === 'HEAD') delete req.payload;
    return { ...req, route: route.name, touched };
  }
}

describe(`API under hostile HTTP requests (FUZZ_SEED=${SEED})`, () => {
  let redisSrv: LocalService;
  let broker: LocalService;
  let influxSrv: LocalService;
  let redis: Redis;
  let influx: Influx;
  let app: ApiApp;
  let meterClient: MqttClient;
  let responder: ReadResponder;
  const logs = memoryLogger('error');

  beforeAll(async () => {
    console.log(`http fuzz: FUZZ_SEED=${SEED} FUZZ_HTTP_COUNT=${COUNT}`);
    [redisSrv, broker, influxSrv] = await Promise.all([startRedis(), startMosquitto(), startInflux()]);
    const plain = (id: string, scopes: string[]) => ({ id, scopes });
    const config = loadConfig({
      REDIS_URL: redisSrv.url,
      MQTT_URL: broker.url,
      INFLUX_URL: influxSrv.url,
      INFLUX_BUCKET: 'meterflow',
      STREAM_SHARDS: '4',
      MF_INSTANCE: 'fuzz-api',
      // Plain (development) tokens: their check is one SHA-256, so 5,000 requests do not spend minutes in scrypt.
      API_TOKENS: JSON.stringify({
        [ADMIN]: plain('admin', ['admin']),
        [READER]: plain('reader', []),
        [WRITER]: plain('writer', ['alerts:write']),
        [BILLING]: plain('billing', ['billing:read']),
        [COMMAND]: plain('command', ['meters:command']),
        [INSIGHTS]: plain('insights', ['insights:read']),
        [DR_WRITER]: plain('dr-writer', ['dr:write']),
      }),
      // Every request comes from one address: limits out of the way, the fuzz is about inputs.
      API_RATE_LIMIT_TOKEN: '1000000',
      API_RATE_LIMIT_ADDRESS: '1000000',
      API_RATE_LIMIT_PROBES: '1000000',
    });
    redis = createRedis(config.redis.url, 'fuzz-api');
    influx = await createInflux(config.influx, logs.log);
    await influx.ensureDatabase();
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    app = await buildApp({ config, log: logs.log, metrics: createMetrics(), redis, influx, registry }, { docs: true });
    await app.ready();
    const seeded = await app.inject({ method: 'POST', url: '/api/v1/customers', headers: { authorization: `Bearer ${ADMIN}` }, payload: METERS.map(customer) });
    expect(seeded.json()).toEqual({ imported: METERS.length, rejected: [] });
    // The meters answer remote reads.
    meterClient = await mqtt.connectAsync(broker.url, { clientId: 'fuzz-meters' });
    responder = await startReadResponder(meterClient, (meterId) =>
      METERS.includes(meterId)
        ? { reading: JSON.stringify({ meterId, ts: '2026-11-26T02:15:00Z', seq: 1, importWh: 12345, exportWh: 0, powerW: 500, voltageV: 230 }) }
        : undefined,
    );
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await responder?.close();
    await meterClient?.endAsync();
    await influx?.close();
    if (redis) await closeRedis(redis);
    await Promise.all([redisSrv?.destroy(), broker?.destroy(), influxSrv?.destroy()]);
  });

  it(`answers ${COUNT} hostile requests with 4xx JSON errors (or a correct 2xx), never 5xx; good requests keep working`, async () => {
    const started = Date.now();
    const gen = new HostileRequests(SEED);
    const heapStart = liveHeap();
    const rssStart = process.memoryUsage().rss;
    let rssMax = rssStart;
    const sampler = setInterval(() => {
      rssMax = Math.max(rssMax, process.memoryUsage().rss);
    }, 100);
    const failures: string[] = [];
    const outcomes = new Map<string, Map<number, number>>();
    const covered = new Set<string>();
    let goodCount = 0;
    let notSendable = 0;
    const show = (r: Req) => `${r.method} ${r.url.slice(0, 160)} ${JSON.stringify(r.headers).slice(0, 160)} ${String(r.payload ?? '').slice(0, 80)}`;

    for (let i = 0; i < COUNT; i++) {
      const h = gen.next();
      let res: Awaited<ReturnType<ApiApp['inject']>>;
      try {
        res = await app.inject({ method: h.method as 'GET', url: h.url, headers: h.headers, payload: h.payload });
      } catch (err) {
        // Refused by the HTTP client before it reached the server (an invalid header character).
        notSendable++;
        if (!(err instanceof Error && /header|character/i.test(err.message))) failures.push(`inject threw ${String(err)}: ${show(h)}`);
        continue;
      }
      for (const t of h.touched) covered.add(t);
      const byStatus = outcomes.get(h.route) ?? new Map<number, number>();
      byStatus.set(res.statusCode, (byStatus.get(res.statusCode) ?? 0) + 1);
      outcomes.set(h.route, byStatus);
      if (res.statusCode >= 500) failures.push(`${res.statusCode} ${res.body.slice(0, 200)}: ${show(h)}`);
      else if (res.statusCode >= 400 && h.method !== 'HEAD') {
        let body: unknown;
        try {
          body = res.json();
        } catch {
          body = undefined;
        }
        const named =
          body !== null &&
          typeof body === 'object' &&
          (('message' in body && typeof body.message === 'string' && body.message.length > 0 && 'statusCode' in body && body.statusCode === res.statusCode) ||
            // the registry imports' documented 400: which records failed and why
            ('rejected' in body && Array.isArray(body.rejected) && body.rejected.length > 0));
        if (!named) failures.push(`${res.statusCode} without a JSON error naming the problem (${res.body.slice(0, 120)}): ${show(h)}`);
      }

      if (i % GOOD_EVERY === 0) {
        const route = ROUTES[(i / GOOD_EVERY) % ROUTES.length];
        if (route === undefined) continue;
        const g = goodRequest(route);
        const r = await app.inject({ method: g.method as 'GET', url: g.url, headers: g.headers, payload: g.payload });
        goodCount++;
        const problem = checkGood(route.name, g, r.statusCode, r.body);
        if (problem !== undefined) failures.push(`good ${route.name}: ${problem}: ${show(g)}`);
      }
    }
    clearInterval(sampler);
    const heapEnd = liveHeap();

    expect(({} as Record<string, unknown>).polluted, 'Object.prototype polluted').toBeUndefined();
    const everything = ROUTES.flatMap((r) => [
      ...Object.keys(r.params).map((p) => `${r.name}.param:${p}`),
      ...Object.keys(r.query).map((q) => `${r.name}.query:${q}`),
      `${r.name}.header:authorization`,
      ...(r.method === 'POST' ? [`${r.name}.body`, `${r.name}.header:content-type`] : []),
    ]);
    const table = [...outcomes]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(
        ([route, m]) =>
          `  ${route.padEnd(18)} ${[...m]
            .sort(([a], [b]) => a - b)
            .map(([s, n]) => `${s}x${n}`)
            .join(' ')}`,
      );
    console.log(
      [
        `http fuzz (FUZZ_SEED=${SEED}): ${COUNT} hostile requests (${notSendable} refused by the client), ${goodCount} good beside them, ` +
          `${((Date.now() - started) / 1000).toFixed(1)} s, RSS ${(rssStart / 2 ** 20).toFixed(0)} -> max ${(rssMax / 2 ** 20).toFixed(0)} MiB, ` +
          `live heap ${(heapStart / 2 ** 20).toFixed(0)} -> ${(heapEnd / 2 ** 20).toFixed(0)} MiB, ` +
          `${responder.answered} remote reads answered`,
        ...table,
      ].join('\n'),
    );
    expect(failures.slice(0, 30)).toEqual([]);
    expect(everything.filter((t) => !covered.has(t))).toEqual([]);
    expect(logs.lines.filter((l) => l.includes('"level":50')).slice(0, 5)).toEqual([]);
    expect(heapEnd - heapStart).toBeLessThan(MAX_HEAP_GROWTH);
    expect(rssMax).toBeLessThan(MAX_RSS);
  }, 170_000);
});

/** A good request's answer, checked against what the seeded state says it must be; undefined when right. */
function checkGood(route: string, req: Req, status: number, text: string): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  const is = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  const idIn = (prefix: string) => decodeURIComponent(req.url.slice(prefix.length).split(/[/?]/)[0] ?? '');
  const expectStatus = [
    'billing.period',
    'alerts.get',
    'alerts.ack',
    'alerts.resolve',
    'alerts.assign',
    'alerts.comment',
    'alerts.history',
    'profile',
    'dr.events.get',
    'dr.settlement',
  ].includes(route)
    ? 404
    : route === 'dr.events.post'
      ? 201
      : 200;
  if (status !== expectStatus) return `status ${status}, expected ${expectStatus}: ${text.slice(0, 200)}`;
  switch (route) {
    case 'healthz':
      return is(body) && body.status === 'ok' ? undefined : text.slice(0, 100);
    case 'readyz':
      return is(body) && body.status === 'ready' ? undefined : text.slice(0, 100);
    case 'metrics':
      return text.includes('# HELP') ? undefined : 'no metrics';
    case 'docs':
      return is(body) && typeof body.openapi === 'string' ? undefined : 'no OpenAPI document';
    case 'customers.post':
      return is(body) && body.imported === 1 && Array.isArray(body.rejected) && body.rejected.length === 0 ? undefined : text.slice(0, 200);
    case 'transformers.post':
      return is(body) && body.imported === 1 ? undefined : text.slice(0, 200);
    case 'customers.get': {
      const id = idIn('/api/v1/customers/');
      return is(body) && body.meterId === id && body.customerId === `C-${id}` ? undefined : text.slice(0, 200);
    }
    case 'meters.get': {
      const id = idIn('/api/v1/meters/');
      return is(body) && body.meterId === id && body.registered === true && Array.isArray(body.intervals) ? undefined : text.slice(0, 200);
    }
    case 'alerts.list':
    case 'dead-letters':
    case 'billing.reads':
    case 'audit':
      return is(body) && Array.isArray(body.items) ? undefined : text.slice(0, 200);
    case 'tariff-advice': {
      const id = idIn('/api/v1/customers/');
      return is(body) && body.customerId === id && body.currentTariff === 'default' && Array.isArray(body.options) ? undefined : text.slice(0, 200);
    }
    case 'dr.events.post':
      return is(body) && typeof body.id === 'string' && body.notified === false && body.participants === 1 ? undefined : text.slice(0, 200);
    case 'dr.events.list':
      return is(body) && Array.isArray(body.items) ? undefined : text.slice(0, 200);
    case 'dr.forecast':
      return is(body) && body.day === '2026-11-02' && Array.isArray(body.slots) && body.slots.length === 96 ? undefined : text.slice(0, 200);
    case 'profiles':
      return typeof body === 'string' && body.startsWith('customerId,class,segment') ? undefined : text.slice(0, 200);
    case 'watchlist':
      return is(body) && body.month === '2026-10' && Array.isArray(body.items) && Array.isArray(body.explained) ? undefined : text.slice(0, 200);
    case 'whoami':
      return is(body) && typeof body.id === 'string' && Array.isArray(body.scopes) ? undefined : text.slice(0, 200);
    case 'console':
      return typeof body === 'string' && body.includes('<html') ? undefined : 'no console page';
    case 'remote-read': {
      const id = idIn('/api/v1/meters/');
      const reading = is(body) ? body.reading : undefined;
      return is(reading) && reading.meterId === id && reading.importWh === 12345 ? undefined : text.slice(0, 200);
    }
    default:
      return is(body) && typeof body.message === 'string' ? undefined : text.slice(0, 200);
  }
}
