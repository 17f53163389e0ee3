import { Writable } from 'node:stream';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type ApiApp } from '../../src/api/app.js';
import { AUDIT_STREAM } from '../../src/api/audit.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import { derivedTokenId, hashToken } from '../../src/shared/api-tokens.js';
import { loadConfig, loadSection } from '../../src/shared/config.js';
import type { Env } from '../../src/shared/config-env.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { createLogger } from '../../src/shared/logger.js';
import { createMetrics, type Registry } from '../../src/shared/metrics.js';
import { closeRedis, createRedis } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { freePort, startTestRedis, type LocalService } from '../helpers/services.js';

/** Cheap scrypt for tests; production hashes come from `meterflow token hash` (ln=14). */
const FAST = { ln: 10, r: 8, p: 1 };
const ADMIN = 'mf_admin-token-for-the-security-test';
const WRITER = 'mf_alerts-writer-token-security-test';
const PLAIN = 'plain-dev-token-billing-and-command';
const TOKENS = [ADMIN, WRITER, PLAIN];

const ALERT_ID = '0000abcde-0123456789abcdef';
const WRITE_ROUTES = [
  '/api/v1/customers',
  '/api/v1/transformers',
  `/api/v1/alerts/${ALERT_ID}/ack`,
  `/api/v1/alerts/${ALERT_ID}/resolve`,
  '/api/v1/meters/M-1/remote-read',
];
const MALFORMED = ['{', '{"__proto__":1}', '{"constructor":{"prototype":{"polluted":true}}}', '[1,', '{"a":}'];

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

describe('API security', () => {
  let redisSrv: LocalService;
  let redis: Redis;
  let influx: Influx;
  let registry: RegistryStore;
  let apiTokens: string;
  let influxUrl: string;
  const apps: ApiApp[] = [];
  /** Every log line any app wrote: checked for token text at the end. */
  const logLines: string[] = [];
  const log = createLogger({
    level: 'info',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(chunk.toString('utf8'));
        done();
      },
    }),
  });

  async function app(env: Env = {}, opts: { docs?: boolean; extra?: (a: ApiApp) => void; metrics?: Registry } = {}): Promise<ApiApp> {
    const config = loadConfig({
      REDIS_URL: redisSrv.url,
      INFLUX_URL: influxUrl,
      INFLUX_API: 'v1',
      MQTT_URL: 'mqtt://127.0.0.1:1', // remote reads of registered meters are not exercised here
      API_TOKENS: apiTokens,
      ...env,
    });
    const a = await buildApp({ config, log, metrics: opts.metrics ?? createMetrics(), redis, influx, registry }, { docs: opts.docs ?? false });
    opts.extra?.(a);
    await a.ready();
    apps.push(a);
    return a;
  }
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  let main: ApiApp;

  beforeAll(async () => {
    redisSrv = await startTestRedis();
    redis = createRedis(redisSrv.url, 'test');
    influxUrl = `http://127.0.0.1:${await freePort()}`;
    influx = await createInflux({ url: influxUrl, bucket: 'unused', api: 'v1' }, log);
    registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    apiTokens = JSON.stringify({
      [await hashToken(ADMIN, FAST)]: { id: 'ops-console', scopes: ['admin'] },
      [await hashToken(WRITER, FAST)]: ['alerts:write'],
      [PLAIN]: { id: 'dev', scopes: ['billing:read', 'meters:command'] },
    });
    main = await app(
      {},
      {
        extra: (a) => {
          a.get('/api/v1/boom', async () => {
            const err = new Error('secret internal detail: redis at 10.0.0.7 refused AUTH for user meterflow');
            err.stack = `${err.message}\n    at secretFunction (/srv/meterflow/src/secret.ts:1:1)`;
            throw err;
          });
        },
      },
    );
  }, 120_000);

  afterAll(async () => {
    for (const a of apps) await a.close();
    await influx?.close();
    if (redis) await closeRedis(redis);
    await redisSrv?.destroy();
  });

  it('a hashed token works, a plain token from config works; missing or wrong tokens answer 401; scopes answer 403', async () => {
    const imported = await main.inject({ method: 'POST', url: '/api/v1/customers', headers: bearer(ADMIN), payload: [customer('M-1')] });
    expect(imported.statusCode).toBe(200);
    expect(imported.json()).toEqual({ imported: 1, rejected: [] });
    const got = await main.inject({ method: 'GET', url: '/api/v1/customers/M-1', headers: bearer(PLAIN) });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject({ meterId: 'M-1', customerId: 'C-M-1' });

    const missing = await main.inject({ method: 'GET', url: '/api/v1/customers/M-1' });
    expect(missing.statusCode).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer');
    for (const wrong of [`${ADMIN}x`, 'mf_totally-unknown-token', PLAIN.toUpperCase()]) {
      const r = await main.inject({ method: 'GET', url: '/api/v1/customers/M-1', headers: bearer(wrong) });
      expect(r.statusCode).toBe(401);
      expect(r.json()).toEqual({ statusCode: 401, error: 'Unauthorized', message: 'unknown token' });
    }
    // The stored hash itself is not a token.
    const [hashKey] = Object.keys(JSON.parse(apiTokens));
    expect((await main.inject({ method: 'GET', url: '/api/v1/customers/M-1', headers: bearer(hashKey ?? '') })).statusCode).toBe(401);

    const forbidden = await main.inject({ method: 'POST', url: '/api/v1/customers', headers: bearer(PLAIN), payload: [customer('M-2')] });
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json()).toEqual({ statusCode: 403, error: 'Forbidden', message: 'token lacks scope admin' });
  });

  it('malformed JSON answers 400 on every route that takes a body, and an unauthenticated one 401 before it is read', async () => {
    for (const url of WRITE_ROUTES) {
      for (const payload of MALFORMED) {
        const r = await main.inject({ method: 'POST', url, headers: { ...bearer(ADMIN), 'content-type': 'application/json' }, payload });
        expect({ url, payload, status: r.statusCode }).toEqual({ url, payload, status: 400 });
        const body: { statusCode: number; error: string; message: string } = r.json();
        expect(body.statusCode).toBe(400);
        expect(body.error).toBe('Bad Request');
        expect(r.body).not.toMatch(/stack|at .*\.js:\d+/);
      }
      const anon = await main.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: '{' });
      expect(anon.statusCode).toBe(401);
    }
    // A well-formed but wrong body is a 400 too, with the field to blame.
    const bad = await main.inject({ method: 'POST', url: `/api/v1/alerts/${ALERT_ID}/ack`, headers: bearer(WRITER), payload: { by: { name: 'alice' } } });
    expect(bad.statusCode).toBe(400);
    // Nothing reached Object.prototype.
    expect(Object.hasOwn(Object.prototype, 'polluted')).toBe(false);
  });

  it('a number coerced to Infinity ("1e999") answers 400 naming its parameter, on every route (ajv skips its bounds)', async () => {
    for (const url of ['/api/v1/alerts?limit=1e999', '/api/v1/notifications/dead-letters?limit=-1e999', '/api/v1/audit?limit=1e999']) {
      const r = await main.inject({ method: 'GET', url, headers: bearer(ADMIN) });
      expect(r.statusCode, url).toBe(400);
      expect(r.json(), url).toMatchObject({ statusCode: 400, field: 'querystring.limit', message: 'limit: expected a finite number' });
    }
  });

  it('an internal error answers 500 with a request id and no stack or message; the log has them', async () => {
    const r = await main.inject({ method: 'GET', url: '/api/v1/boom' });
    expect(r.statusCode).toBe(500);
    const requestId = r.headers['x-request-id'];
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.json()).toEqual({ statusCode: 500, error: 'Internal Server Error', message: `internal error (request ${requestId})` });
    expect(r.body).not.toContain('secret');
    expect(r.body).not.toContain('10.0.0.7');
    const line = logLines.find((l) => l.includes(`"reqId":"${requestId}"`) && l.includes('request failed'));
    expect(line).toContain('secretFunction');
  });

  it('bodies: small everywhere, large only on the registry imports; over-long parameters answer 414, over-long request heads 431', async () => {
    const a = await app({ API_BODY_LIMIT: '1024', API_IMPORT_BODY_LIMIT: '65536' });
    const big = { by: 'x'.repeat(2000) };
    const ack = await a.inject({ method: 'POST', url: `/api/v1/alerts/${ALERT_ID}/ack`, headers: bearer(WRITER), payload: big });
    expect(ack.statusCode).toBe(413);
    expect(ack.json()).toMatchObject({ statusCode: 413, error: 'Payload Too Large' });
    const records = Array.from({ length: 20 }, (_, i) => customer(`M-BIG-${i}`));
    expect(JSON.stringify(records).length).toBeGreaterThan(1024);
    const imp = await a.inject({ method: 'POST', url: '/api/v1/customers', headers: bearer(ADMIN), payload: records });
    expect(imp.statusCode).toBe(200);
    expect(imp.json()).toEqual({ imported: 20, rejected: [] });
    const tooBig = await a.inject({
      method: 'POST',
      url: '/api/v1/customers',
      headers: { ...bearer(ADMIN), 'content-type': 'text/csv' },
      payload: 'x'.repeat(70_000),
    });
    expect(tooBig.statusCode).toBe(413);
    const long = await a.inject({ method: 'GET', url: `/api/v1/customers/${'M'.repeat(200)}`, headers: bearer(ADMIN) });
    expect(long.statusCode).toBe(414);
    // The request head limit is the HTTP server's: checked on a real socket.
    await a.listen({ host: '127.0.0.1', port: 0 });
    const address = a.server.address();
    const port = address !== null && typeof address === 'object' ? address.port : 0;
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`, { headers: { 'x-padding': 'p'.repeat(8 * 1024) } });
    expect(ok.status).toBe(200);
    const tooLong = await fetch(`http://127.0.0.1:${port}/healthz`, { headers: { 'x-padding': 'p'.repeat(20 * 1024) } });
    expect(tooLong.status).toBe(431);
  });

  it('rate limits: per token after authentication, per address before it; 429 with Retry-After; probes counted apart', async () => {
    const metrics = createMetrics();
    const a = await app({ API_RATE_LIMIT_TOKEN: '3', API_RATE_LIMIT_ADDRESS: '7', API_RATE_LIMIT_PROBES: '2', API_RATE_WINDOW_S: '30' }, { metrics });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await a.inject({ method: 'GET', url: '/api/v1/customers/M-1', headers: bearer(PLAIN) })).statusCode);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const limited = await a.inject({ method: 'GET', url: '/api/v1/customers/M-1', headers: bearer(PLAIN) });
    expect(limited.statusCode).toBe(429);
    const retry = Number(limited.headers['retry-after']);
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(30);
    expect(limited.json()).toEqual({ statusCode: 429, error: 'Too Many Requests', message: `rate limit exceeded, retry in ${retry} s` });
    // Another token from the same address still has its own allowance…
    expect((await a.inject({ method: 'GET', url: '/api/v1/customers/M-1', headers: bearer(ADMIN) })).statusCode).toBe(200);
    // …until the address has used its 7: 6 requests so far, one more, then 429 for any token or none.
    expect((await a.inject({ method: 'GET', url: '/api/v1/customers/M-1', headers: bearer(ADMIN) })).statusCode).toBe(200);
    const byAddress = await a.inject({ method: 'GET', url: '/api/v1/customers/M-1', headers: bearer(WRITER) });
    expect(byAddress.statusCode).toBe(429);
    expect(Number(byAddress.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect((await a.inject({ method: 'GET', url: '/api/v1/customers/M-1' })).statusCode).toBe(429);
    // Another address is not limited by this one.
    expect((await a.inject({ method: 'GET', url: '/api/v1/customers/M-1', headers: bearer(WRITER), remoteAddress: '10.1.2.3' })).statusCode).toBe(200);
    // Probes have their own counter per address: not blocked by the API's, limited on their own.
    expect((await a.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await a.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    const probe = await a.inject({ method: 'GET', url: '/healthz' });
    expect(probe.statusCode).toBe(429);
    expect(Number(probe.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    // Refusals are counted for /metrics: 429 × 5 here (token, token, address, address, probe).
    expect((await metrics.getSingleMetricAsString('meterflow_api_refused_total')).split('\n')).toContain('meterflow_api_refused_total{status="429"} 5');
  });

  it('security headers on every answer; the docs page gets its own CSP and its assets load', async () => {
    const h = (await main.inject({ method: 'GET', url: '/healthz' })).headers;
    expect(h['content-security-policy']).toBe("default-src 'none';base-uri 'none';form-action 'none';frame-ancestors 'none'");
    expect(h['x-content-type-options']).toBe('nosniff');
    expect(h['x-frame-options']).toBe('SAMEORIGIN');
    expect(h['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    expect(h['referrer-policy']).toBe('no-referrer');
    expect(h['cross-origin-resource-policy']).toBe('same-origin');
    expect(h['x-powered-by']).toBeUndefined();
    const denied = await main.inject({ method: 'GET', url: '/api/v1/customers/M-1' });
    expect(denied.headers['x-content-type-options']).toBe('nosniff');

    const docs = await app({}, { docs: true });
    const page = await docs.inject({ method: 'GET', url: '/docs/' });
    expect(page.statusCode).toBe(200);
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("img-src 'self' data: validator.swagger.io");
    expect(csp).not.toContain('upgrade-insecure-requests');
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    for (const asset of ['/docs/static/swagger-ui-bundle.js', '/docs/static/swagger-initializer.js', '/docs/static/swagger-ui.css', '/docs/json']) {
      const r = await docs.inject({ method: 'GET', url: asset });
      expect({ asset, status: r.statusCode }).toEqual({ asset, status: 200 });
    }
    // Every script the page loads is a file from 'self' (no inline script for the CSP to block).
    expect(page.body).not.toMatch(/<script>(?!\s*<\/script>)/);
  });

  it('CORS: no headers unless API_CORS_ORIGINS is set, then only for the origins it lists', async () => {
    const origin = 'https://ops.example.com';
    const pre = await main.inject({
      method: 'OPTIONS',
      url: '/api/v1/customers/M-1',
      headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
    });
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    const plain = await main.inject({ method: 'GET', url: '/api/v1/customers/M-1', headers: { ...bearer(PLAIN), origin } });
    expect(plain.statusCode).toBe(200);
    expect(plain.headers['access-control-allow-origin']).toBeUndefined();

    const cors = await app({ API_CORS_ORIGINS: `${origin}, https://billing.example.com` });
    const ok = await cors.inject({
      method: 'OPTIONS',
      url: '/api/v1/customers/M-1',
      headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
    });
    expect(ok.statusCode).toBe(204);
    expect(ok.headers['access-control-allow-origin']).toBe(origin);
    expect(ok.headers['access-control-allow-headers']).toBe('authorization, content-type, accept');
    const get = await cors.inject({ method: 'GET', url: '/api/v1/customers/M-1', headers: { ...bearer(PLAIN), origin } });
    expect(get.headers['access-control-allow-origin']).toBe(origin);
    expect(String(get.headers['access-control-expose-headers'])).toContain('retry-after');
    const other = await cors.inject({ method: 'GET', url: '/api/v1/customers/M-1', headers: { ...bearer(PLAIN), origin: 'https://evil.example.net' } });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('the audit log: every authenticated write with token id, route, target, status and time; never a token; admin reads it', async () => {
    const writes = [
      { url: '/api/v1/customers', token: ADMIN, payload: [customer('M-3')], tokenId: 'ops-console', route: '/api/v1/customers', target: null, status: 200 },
      {
        url: `/api/v1/alerts/${ALERT_ID}/ack`,
        token: WRITER,
        payload: { by: 'alice' },
        tokenId: derivedTokenId(Object.keys(JSON.parse(apiTokens))[1] ?? ''),
        route: '/api/v1/alerts/:id/ack',
        target: ALERT_ID,
        status: 404,
      },
      {
        url: `/api/v1/alerts/${ALERT_ID}/resolve`,
        token: PLAIN,
        payload: {},
        tokenId: 'dev',
        route: '/api/v1/alerts/:id/resolve',
        target: ALERT_ID,
        status: 403,
      },
      {
        url: '/api/v1/meters/NOPE-1/remote-read',
        token: PLAIN,
        payload: undefined,
        tokenId: 'dev',
        route: '/api/v1/meters/:id/remote-read',
        target: 'NOPE-1',
        status: 404,
      },
      {
        url: '/api/v1/transformers',
        token: ADMIN,
        payload: [{ transformerId: 'T9' }],
        tokenId: 'ops-console',
        route: '/api/v1/transformers',
        target: null,
        status: 400,
      },
    ];
    const before = Date.now();
    const ids: string[] = [];
    for (const w of writes) {
      const r = await main.inject({ method: 'POST', url: w.url, headers: bearer(w.token), ...(w.payload === undefined ? {} : { payload: w.payload }) });
      expect({ url: w.url, status: r.statusCode }).toEqual({ url: w.url, status: w.status });
      ids.push(String(r.headers['x-request-id']));
    }
    // Reads and refused tokens are not audited.
    const readId = String((await main.inject({ method: 'GET', url: '/api/v1/customers/M-3', headers: bearer(ADMIN) })).headers['x-request-id']);
    const anonId = String(
      (await main.inject({ method: 'POST', url: '/api/v1/customers', headers: bearer('mf_wrong-token-123'), payload: [] })).headers['x-request-id'],
    );

    // Appends run after the answer: wait for them.
    const deadline = Date.now() + 5000;
    let page: { items: Array<Record<string, unknown>>; nextCursor: string | null } = { items: [], nextCursor: null };
    while (Date.now() < deadline) {
      const r = await main.inject({ method: 'GET', url: '/api/v1/audit?limit=1000', headers: bearer(ADMIN) });
      expect(r.statusCode).toBe(200);
      page = r.json();
      if (ids.every((id) => page.items.some((e) => e.requestId === id))) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    const mine = ids.map((id) => page.items.find((e) => e.requestId === id));
    expect(mine.map((e) => ({ tokenId: e?.tokenId, method: e?.method, route: e?.route, target: e?.target, status: e?.status, ip: e?.ip }))).toEqual(
      writes.map((w) => ({ tokenId: w.tokenId, method: 'POST', route: w.route, target: w.target, status: w.status, ip: '127.0.0.1' })),
    );
    for (const e of mine) {
      const ts = Date.parse(String(e?.ts));
      expect(ts).toBeGreaterThanOrEqual(before - 1000);
      expect(ts).toBeLessThanOrEqual(Date.now());
    }
    expect(page.items.some((e) => e.requestId === readId || e.requestId === anonId)).toBe(false);
    // Newest first, paged by cursor.
    const first = await main.inject({ method: 'GET', url: '/api/v1/audit?limit=2', headers: bearer(ADMIN) });
    const p1: { items: Array<{ id: string }>; nextCursor: string | null } = first.json();
    expect(p1.items.length).toBe(2);
    expect(p1.nextCursor).toBe(p1.items[1]?.id);
    const p2: { items: Array<{ id: string }> } = (
      await main.inject({ method: 'GET', url: `/api/v1/audit?limit=2&cursor=${p1.nextCursor}`, headers: bearer(ADMIN) })
    ).json();
    expect(p2.items[0]?.id).not.toBe(p1.items[1]?.id);
    expect((p2.items[0]?.id ?? '') < (p1.items[1]?.id ?? '')).toBe(true);
    // Only admin reads it.
    expect((await main.inject({ method: 'GET', url: '/api/v1/audit', headers: bearer(WRITER) })).statusCode).toBe(403);

    // The stream itself, and every log line, hold no token text.
    const raw = JSON.stringify(await redis.xrange(AUDIT_STREAM, '-', '+'));
    for (const t of TOKENS) expect(raw).not.toContain(t);
    expect(raw).toContain('ops-console');
    const auditLines = logLines.filter((l) => l.includes('"audit":true'));
    expect(auditLines.length).toBeGreaterThanOrEqual(writes.length);
    for (const l of logLines) for (const t of TOKENS) expect(l).not.toContain(t);
  });
});
