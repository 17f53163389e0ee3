import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { Compile } from 'typebox/compile';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBinary } from '../../simulators/services.js';
import { buildApp, type ApiApp } from '../../src/api/app.js';
import type { AlertRecord } from '../../src/contracts/alert.js';
import { AlertsConfig } from '../../src/contracts/config-alerts.js';
import { RegistryConfig } from '../../src/contracts/config-registry.js';
import type { AnomalyType, DetectionEvent, Severity } from '../../src/contracts/events.js';
import { CustomerRecord } from '../../src/contracts/registry.js';
import { createAlertService } from '../../src/alerting/service.js';
import { loadConfig, loadSection } from '../../src/shared/config.js';
import { createInflux, type Influx } from '../../src/shared/influx.js';
import { createLogger } from '../../src/shared/logger.js';
import { createMetrics } from '../../src/shared/metrics.js';
import { closeRedis, createRedis } from '../../src/shared/redis.js';
import { RegistryStore } from '../../src/shared/registry.js';
import { freePort, startTestRedis, type LocalService } from '../helpers/services.js';

/** Operators' tokens: one that may change alerts, one that may only read them. */
const WRITER = 'console-e2e-writer-token-0001';
const READER = 'console-e2e-reader-token-0001';
const GRAFANA = 'http://grafana.example.net:3000';
const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const MIN = 60_000;
/** The transformer that loses power (6 meters, one of them a hospital) and the one with ordinary alerts. */
const TX = 'T-0907';
const OTHER_TX = 'T-0212';
const checkCustomer = Compile(CustomerRecord);

function meter(meterId: string, transformerId: string, feederId: string, cls: string): CustomerRecord {
  const m: unknown = {
    meterId,
    customerId: `C-${meterId}`,
    class: cls,
    tariff: 'default',
    contractKw: 10,
    feederId,
    transformerId,
    hasPv: false,
    intervalMinutes: 15,
  };
  if (!checkCustomer.Check(m)) throw new Error(`bad test meter ${meterId}`);
  return m;
}

const OUTAGE_METERS = Array.from({ length: 6 }, (_, i) => meter(`M-9070${i}`, TX, 'F-3', i === 2 ? 'critical' : 'residential'));
const OTHER_METERS = [meter('M-21201', OTHER_TX, 'F-1', 'residential'), meter('M-21202', OTHER_TX, 'F-1', 'industrial')];

function event(type: AnomalyType, m: CustomerRecord, ts: number, severity: Severity, reason: string): DetectionEvent {
  return {
    id: `${type}:${m.meterId}:${ts}:firing`,
    type,
    status: 'firing',
    subjectKind: 'meter',
    subject: m.meterId,
    ts,
    meterId: m.meterId,
    customerId: m.customerId,
    transformerId: m.transformerId,
    feederId: m.feederId,
    customerClass: m.class,
    value: 0,
    expected: 0,
    score: 0,
    severity,
    reason,
  };
}

/** The console's table, as an operator reads it: one entry per row, in order. */
async function rows(
  page: Page,
): Promise<Array<{ id: string; type: string; severity: string; state: string; buttons: Array<{ action: string; disabled: boolean }> }>> {
  return page.$$eval('#rows tr[data-alert-id]', (trs) =>
    trs.map((tr) => ({
      id: tr.getAttribute('data-alert-id') ?? '',
      type: tr.getAttribute('data-type') ?? '',
      severity: tr.querySelector('.badge')?.textContent ?? '',
      state: tr.querySelector('.cell-state span')?.textContent ?? '',
      buttons: [...tr.querySelectorAll('button[data-action]')].map((b) => ({
        action: b.getAttribute('data-action') ?? '',
        disabled: b.hasAttribute('disabled'),
      })),
    })),
  );
}

describe('operator console in a real browser (headless Chromium, real API and Redis)', () => {
  let redisSrv: LocalService;
  let redis: Redis;
  let influx: Influx;
  let app: ApiApp;
  let base: string;
  let context: BrowserContext;
  let profileDir: string;
  let outDir: string;
  const log = createLogger({ level: 'error' });
  const ids = { outage: '', voltage: '', tamper: '' };
  let service: ReturnType<typeof createAlertService>['service'];
  /** Errors the pages logged (a CSP violation is one). */
  const pageErrors: string[] = [];

  beforeAll(async () => {
    const executablePath = ensureBinary('chromium', (m) => process.stderr.write(`[console e2e] ${m}\n`));
    redisSrv = await startTestRedis();
    redis = createRedis(redisSrv.url, 'test');
    influx = await createInflux({ url: `http://127.0.0.1:${await freePort()}`, bucket: 'unused', api: 'v1' }, log);
    const registry = new RegistryStore(redis, loadSection('registry', RegistryConfig, {}).defaults);
    await registry.upsertMeters([...OUTAGE_METERS, ...OTHER_METERS]);
    await registry.upsertTransformers([
      { transformerId: TX, feederId: 'F-3', ratingKva: 250 },
      { transformerId: OTHER_TX, feederId: 'F-1', ratingKva: 400 },
    ]);
    const config = loadConfig({
      REDIS_URL: redisSrv.url,
      MQTT_URL: 'mqtt://127.0.0.1:1',
      GRAFANA_URL: GRAFANA,
      API_TOKENS: JSON.stringify({ [WRITER]: { id: 'control-room', scopes: ['alerts:write'] }, [READER]: { id: 'viewer', scopes: ['billing:read'] } }),
    });

    // Alerts are made the way the alerts role makes them: detection events through the alert service.
    const created = createAlertService(redis, registry, loadSection('alerts', AlertsConfig, {}), config.streamShards, log);
    service = created.service;
    const t0 = Date.now() - 40 * MIN;
    for (const [i, m] of OUTAGE_METERS.entries()) await service.handleEvent(event('lastGasp', m, t0 + i * 1000, 'warning', 'last gasp'));
    const [plain, factory] = OTHER_METERS;
    if (plain === undefined || factory === undefined) throw new Error('test meters');
    await service.handleEvent(event('voltage', plain, t0 + 10 * MIN, 'warning', 'voltage 201 V, below 207 V'));
    await service.handleEvent(event('tamper', factory, t0 + 20 * MIN, 'major', 'cover opened'));
    // The sweep parks the gasps that came before the outage was declared under it, as the alerts role's sweeper does.
    await service.sweep({ byShard: new Map(), shards: config.streamShards, min: Date.now() });
    const byKey = async (key: string): Promise<AlertRecord> => {
      const a = await created.store.getByKey(key);
      if (a === undefined) throw new Error(`no alert ${key}`);
      return a;
    };
    ids.outage = (await byKey(`outage:${TX}`)).id;
    ids.voltage = (await byKey(`voltage:${plain.meterId}`)).id;
    ids.tamper = (await byKey(`tamper:${factory.meterId}`)).id;

    app = await buildApp({ config, log, metrics: createMetrics(), redis, influx, registry }, { docs: false });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address();
    if (addr === null || typeof addr === 'string') throw new Error('API not listening');
    base = `http://127.0.0.1:${addr.port}`;

    profileDir = mkdtempSync(join(tmpdir(), 'mf-console-profile-'));
    outDir = mkdtempSync(join(tmpdir(), 'mf-console-'));
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1440, height: 900 },
    });
    context.on('weberror', (e) => pageErrors.push(String(e.error())));
    context.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
  });

  afterAll(async () => {
    await context?.close();
    // The browser is gone, but a socket it opened without sending a request (a preconnect) would otherwise hold
    // close() until the request timeout (60 s).
    app?.server.closeAllConnections();
    await app?.close();
    await influx?.close();
    if (redis) await closeRedis(redis);
    await redisSrv?.destroy();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  });

  async function logIn(token: string): Promise<Page> {
    const page = await context.newPage();
    await page.goto(`${base}/console`);
    await page.getByLabel('API token').fill(token);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#rows tr[data-alert-id]').first().waitFor();
    return page;
  }

  it('the page is public and carries its own CSP; the API keeps its own and wants a token', async () => {
    const page = await fetch(`${base}/console`, { redirect: 'manual' });
    expect([page.status, page.headers.get('location')]).toEqual([301, '/console/']);
    for (const path of ['/console/', '/console/console.js', '/console/console.css']) {
      const r = await fetch(`${base}${path}`);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-security-policy')).toBe(
        "default-src 'none';script-src 'self';style-src 'self';connect-src 'self';img-src 'self' data:;base-uri 'none';form-action 'none';frame-ancestors 'none'",
      );
    }
    const who = await fetch(`${base}/api/v1/whoami`);
    expect(who.status).toBe(401);
    expect(who.headers.get('content-security-policy')).toBe("default-src 'none';base-uri 'none';form-action 'none';frame-ancestors 'none'");
    const me = await fetch(`${base}/api/v1/whoami`, { headers: { authorization: `Bearer ${WRITER}` } });
    expect(await me.json()).toEqual({ id: 'control-room', scopes: ['alerts:write'], grafanaUrl: GRAFANA });
  });

  it('an operator logs in, sees the outage as one row first, acknowledges it; changes arrive by the live update', async () => {
    // Behind the outage's row: its six meters' own alerts, which the API hides unless asked.
    const covered = await fetch(`${base}/api/v1/alerts?transformer=${TX}&suppressed=only`, { headers: { authorization: `Bearer ${READER}` } });
    expect(await covered.json()).toEqual({
      nextCursor: null,
      items: OUTAGE_METERS.map(() => expect.objectContaining({ type: 'lastGasp', suppressedBy: ids.outage })),
    });
    const page = await logIn(WRITER);
    // One row per alert: the outage's six per-meter last gasps are folded into it, not listed.
    expect((await rows(page)).map((r) => [r.type, r.severity, r.state])).toEqual([
      ['outage', 'critical', 'open'],
      ['tamper', 'major', 'open'],
      ['voltage', 'warning', 'open'],
    ]);
    expect(await page.locator('#who-id').textContent()).toBe('control-room');
    const outage = page.locator(`tr[data-alert-id="${ids.outage}"]`);
    await outage.locator('details.affected summary').click();
    expect(await outage.locator('details ul.meters li').allTextContents()).toEqual(OUTAGE_METERS.map((m) => m.meterId));
    expect(await outage.locator('details.affected summary').textContent()).toBe('6 meters, 6 customers affected, 1 critical');
    const meterLink = await outage.locator('details ul.meters a').first().getAttribute('href');
    expect(meterLink).toMatch(new RegExp(`^${GRAFANA}/d/meterflow-meter/\\?var-meter=M-90700&var-feeder=F-3&var-transformer=${TX}&from=\\d+&to=now$`));
    expect(await outage.getByRole('link', { name: `Grafana: transformer ${TX}` }).getAttribute('href')).toMatch(
      new RegExp(`^${GRAFANA}/d/meterflow-feeders/\\?var-feeder=F-3&var-transformer=${TX}&from=\\d+&to=now$`),
    );

    // The token lives in this tab's sessionStorage only.
    expect(await page.evaluate("[sessionStorage.getItem('meterflow.console.token'), localStorage.length, document.cookie]")).toEqual([WRITER, 0, '']);
    expect(await context.cookies()).toEqual([]);

    await page.locator('#f-by').fill('A. Operator');
    await outage.getByRole('button', { name: /^Acknowledge/ }).click();
    await page.getByLabel('Comment (optional)').fill('crew dispatched');
    await page.locator('#action-confirm').click();
    await outage.locator('.cell-state span', { hasText: /^acknowledged$/ }).waitFor();
    expect((await rows(page)).map((r) => [r.type, r.state, r.buttons.map((b) => b.action).join(' ')])).toEqual([
      ['outage', 'acknowledged', 'assign resolve'],
      ['tamper', 'open', 'ack assign resolve'],
      ['voltage', 'open', 'ack assign resolve'],
    ]);
    expect(await outage.locator('.cell-state .meta').textContent()).toBe('by A. Operator');
    const tamper = page.locator(`tr[data-alert-id="${ids.tamper}"]`);
    await tamper.getByRole('button', { name: /^Assign/ }).click();
    await page.getByLabel('Assign to').fill('J. Lineworker');
    await page.getByLabel('Comment (optional)').fill('meter cabinet on site visit list');
    await page.locator('#action-confirm').click();
    await tamper.locator('.cell-assignee', { hasText: /^J\. Lineworker$/ }).waitFor();
    // The alert's history, with who did what and their comment.
    await tamper.locator('details.history summary').click();
    await tamper.locator('ol.history li').nth(1).waitFor();
    expect((await tamper.locator('ol.history li').allTextContents()).map((t) => t.replace(/^\d{4}-\d\d-\d\d \d\d:\d\d /, ''))).toEqual([
      'opened',
      'assigned by A. Operator to J. Lineworker: “meter cabinet on site visit list”',
    ]);
    // Open disclosures survive the re-render.
    expect(await outage.locator('details.affected').getAttribute('open')).toBe('');

    // Someone else resolves an alert: the console shows it within a poll, without a reload.
    const r = await service.operator(ids.voltage, { kind: 'resolve', by: 'field crew' });
    expect(r.status).toBe('ok');
    await page.locator(`tr[data-alert-id="${ids.voltage}"]`).waitFor({ state: 'detached', timeout: 10_000 });
    expect((await rows(page)).map((x) => x.id)).toEqual([ids.outage, ids.tamper]);
    expect(await page.locator('#updated').textContent()).toMatch(/^updated \d\d:\d\d:\d\d$/);

    await page.locator('#logout').click();
    // The token is gone from the tab; only the operator's name stays for the next login.
    expect(await page.evaluate("[sessionStorage.getItem('meterflow.console.token'), sessionStorage.getItem('meterflow.console.by')]")).toEqual([
      null,
      'A. Operator',
    ]);
    expect(await page.locator('#login').isVisible()).toBe(true);
    expect(await page.locator('#rows tr').count()).toBe(0);
    await page.close();
  });

  it('a token without alerts:write sees the actions disabled, and the API refuses it anyway (403)', async () => {
    const page = await logIn(READER);
    expect(await page.locator('#who-scopes').textContent()).toBe('billing:read');
    const seen = await rows(page);
    expect(seen.map((r) => r.id)).toEqual([ids.outage, ids.tamper]);
    expect(seen.flatMap((r) => r.buttons)).toEqual([
      { action: 'assign', disabled: true },
      { action: 'resolve', disabled: true },
      { action: 'ack', disabled: true },
      { action: 'assign', disabled: true },
      { action: 'resolve', disabled: true },
    ]);
    const status = await page.evaluate(
      async ([id, token]) =>
        (
          await fetch(`/api/v1/alerts/${id}/ack`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: '{}',
          })
        ).status,
      [ids.tamper, READER] as const,
    );
    expect(status).toBe(403);
    await page.close();
  });

  it('a screenshot of the console (UPDATE_DOCS_SCREENSHOT=1 copies it to docs/console.png); no page error and no CSP violation', async () => {
    // A few more of what a control room sees on a normal day.
    const [plain, factory] = OTHER_METERS;
    if (plain === undefined || factory === undefined) throw new Error('test meters');
    await service.handleEvent(event('reverseFlow', plain, Date.now() - 12 * MIN, 'warning', 'exporting 1.2 kWh with no PV registered'));
    await service.handleEvent(event('customerPeak', factory, Date.now() - 5 * MIN, 'info', '312 kW, over the 250 kW contract'));
    const page = await logIn(WRITER);
    await page.locator(`tr[data-alert-id="${ids.outage}"] details.affected summary`).click();
    expect((await rows(page)).map((r) => r.type)).toEqual(['outage', 'tamper', 'reverseFlow', 'customerPeak']);
    // Keyboard only: Enter on a focused action opens its dialog with the focus inside, Escape closes it.
    await page.locator(`tr[data-alert-id="${ids.tamper}"] button[data-action="ack"]`).focus();
    await page.keyboard.press('Enter');
    expect(await page.evaluate("[document.getElementById('action-dialog').open, document.activeElement.id]")).toEqual([true, 'action-comment']);
    await page.keyboard.press('Escape');
    expect(await page.evaluate("document.getElementById('action-dialog').open")).toBe(false);
    const file = join(outDir, 'console.png');
    await page.screenshot({ path: file, fullPage: true });
    // README's picture: refreshed on request only, so a test run leaves the work tree as it was.
    if (process.env.UPDATE_DOCS_SCREENSHOT === '1') copyFileSync(file, new URL('../../docs/console.png', import.meta.url));
    // A narrow laptop window: the rows become cards, nothing scrolls sideways.
    await page.setViewportSize({ width: 760, height: 900 });
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBe(760);
    await page.screenshot({ path: join(outDir, 'console-narrow.png'), fullPage: true });
    process.stdout.write(`console screenshot: ${file}\n`);
    await page.close();
    // The only error any page logged: the 403 the read-only token was meant to get.
    expect(pageErrors).toEqual(['Failed to load resource: the server responded with a status of 403 (Forbidden)']);
  });
});
