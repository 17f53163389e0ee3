import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { engineConfig, webhookTargets } from '../../src/alerting/settings.js';
import { signWebhook, verifyWebhook } from '../../src/alerting/webhook.js';
import { AlertsConfig } from '../../src/contracts/config-alerts.js';
import { loadSection } from '../../src/shared/config.js';
import { ConfigError } from '../../src/shared/errors.js';

const SECRET = 'whsec-unit-test-secret';
// Reference value from `printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec-unit-test-secret`.
const REFERENCE = 'sha256=ab85f46300dea411ab7b2da7755abae96f9c32d730cc8501e7042fb7de1f0e8c';

describe('webhook signature', () => {
  it('is HMAC-SHA256 over "<timestamp>.<body>"', () => {
    expect(signWebhook(SECRET, 1_700_000_000, '{"a":1}')).toBe(REFERENCE);
  });

  // The receiver's check (src/alerting/webhook-verify.ts, the file receivers copy), tolerance 300 s either way.
  it.each([
    { name: 'valid', ts: '1700000000', sig: REFERENCE, body: '{"a":1}', now: 1_700_000_100, out: { ok: true } },
    { name: 'valid, at the edge of the window (300 s old)', ts: '1700000000', sig: REFERENCE, body: '{"a":1}', now: 1_700_000_300, out: { ok: true } },
    { name: 'valid, receiver clock 300 s behind', ts: '1700000000', sig: REFERENCE, body: '{"a":1}', now: 1_699_999_700, out: { ok: true } },
    { name: 'tampered body', ts: '1700000000', sig: REFERENCE, body: '{"a":2}', now: 1_700_000_100, out: { ok: false, reason: 'mismatch' } },
    { name: 'body with a byte added', ts: '1700000000', sig: REFERENCE, body: '{"a":1} ', now: 1_700_000_100, out: { ok: false, reason: 'mismatch' } },
    { name: 'timestamp changed', ts: '1700000001', sig: REFERENCE, body: '{"a":1}', now: 1_700_000_100, out: { ok: false, reason: 'mismatch' } },
    {
      name: 'signed with another secret',
      ts: '1700000000',
      sig: signWebhook('whsec-some-other-secret', 1_700_000_000, '{"a":1}'),
      body: '{"a":1}',
      now: 1_700_000_100,
      out: { ok: false, reason: 'mismatch' },
    },
    { name: 'too old (a replay)', ts: '1700000000', sig: REFERENCE, body: '{"a":1}', now: 1_700_000_301, out: { ok: false, reason: 'too_old' } },
    { name: 'too far in the future', ts: '1700000000', sig: REFERENCE, body: '{"a":1}', now: 1_699_999_699, out: { ok: false, reason: 'too_new' } },
    { name: 'no signature', ts: '1700000000', sig: undefined, body: '{"a":1}', now: 1_700_000_000, out: { ok: false, reason: 'malformed' } },
    { name: 'no timestamp', ts: undefined, sig: REFERENCE, body: '{"a":1}', now: 1_700_000_000, out: { ok: false, reason: 'malformed' } },
    { name: 'timestamp not an integer', ts: '17e8', sig: REFERENCE, body: '{"a":1}', now: 1_700_000_000, out: { ok: false, reason: 'malformed' } },
    { name: 'negative timestamp', ts: '-1700000000', sig: REFERENCE, body: '{"a":1}', now: 1_700_000_000, out: { ok: false, reason: 'malformed' } },
    {
      name: 'truncated signature',
      ts: '1700000000',
      sig: REFERENCE.slice(0, 20),
      body: '{"a":1}',
      now: 1_700_000_000,
      out: { ok: false, reason: 'malformed' },
    },
    {
      name: 'signature without its scheme',
      ts: '1700000000',
      sig: REFERENCE.slice(7),
      body: '{"a":1}',
      now: 1_700_000_000,
      out: { ok: false, reason: 'malformed' },
    },
    {
      name: 'another scheme',
      ts: '1700000000',
      sig: REFERENCE.replace('sha256', 'sha1'),
      body: '{"a":1}',
      now: 1_700_000_000,
      out: { ok: false, reason: 'malformed' },
    },
    {
      name: 'upper-case hex',
      ts: '1700000000',
      sig: `sha256=${REFERENCE.slice(7).toUpperCase()}`,
      body: '{"a":1}',
      now: 1_700_000_000,
      out: { ok: false, reason: 'malformed' },
    },
    { name: 'not hex', ts: '1700000000', sig: `sha256=${'z'.repeat(64)}`, body: '{"a":1}', now: 1_700_000_000, out: { ok: false, reason: 'malformed' } },
  ])('verify: $name', ({ ts, sig, body, now, out }) => {
    expect(verifyWebhook(SECRET, { timestamp: ts, signature: sig }, body, now)).toEqual(out);
  });

  it('verifies the raw body bytes as well as a string, and takes another tolerance', () => {
    const headers = { timestamp: '1700000000', signature: REFERENCE };
    expect(verifyWebhook(SECRET, headers, Buffer.from('{"a":1}'), 1_700_000_000)).toEqual({ ok: true });
    expect(verifyWebhook(SECRET, headers, '{"a":1}', 1_700_000_061, 60)).toEqual({ ok: false, reason: 'too_old' });
    expect(verifyWebhook(SECRET, headers, '{"a":1}', 1_700_000_060, 60)).toEqual({ ok: true });
  });

  it('compares with crypto.timingSafeEqual and imports nothing but node:crypto, so receivers can copy the file', () => {
    const source = readFileSync(new URL('../../src/alerting/webhook-verify.ts', import.meta.url), 'utf8');
    expect(source.match(/^import .*$/gm)).toEqual(["import { createHmac, timingSafeEqual } from 'node:crypto';"]);
    expect(source).toContain("timingSafeEqual(expected, Buffer.from(hex, 'hex'))");
    // No early-exit comparison of the digest anywhere.
    expect(source).not.toMatch(/expected\s*[!=]==|[!=]==\s*expected|\.equals\(/);
  });
});

describe('alerts config', () => {
  const base = loadSection('alerts', AlertsConfig, {});
  const withHook: AlertsConfig = {
    ...base,
    webhooks: [{ name: 'ops', url: 'https://ops.example.net/hook', secretEnv: 'MF_WEBHOOK_OPS_SECRET' }],
    routes: [{ webhook: 'ops', severities: [], types: [], customerClasses: [], changes: [] }],
  };

  it('defaults load and map to the engine', () => {
    expect(engineConfig(base)).toMatchObject({
      lifecycle: { clearIntervals: 2, flapWindowMs: 6 * 3_600_000, holdWallMs: 60_000 },
      outage: { minMeters: 5, minRatio: 0.3, windowIntervals: 2 },
      severity: { classRaise: { critical: 1 } },
      defaultIntervalMs: 15 * 60_000,
    });
  });

  it('reads each webhook secret from the variable it names', () => {
    expect(webhookTargets(withHook, { MF_WEBHOOK_OPS_SECRET: 'x'.repeat(32) }).get('ops')).toEqual({
      name: 'ops',
      url: 'https://ops.example.net/hook',
      secret: 'x'.repeat(32),
    });
  });

  it.each([
    { name: 'missing secret', cfg: withHook, env: {}, variable: 'MF_WEBHOOK_OPS_SECRET' },
    { name: 'short secret', cfg: withHook, env: { MF_WEBHOOK_OPS_SECRET: 'short' }, variable: 'MF_WEBHOOK_OPS_SECRET' },
    {
      name: 'route to an unknown webhook',
      cfg: { ...withHook, routes: [{ webhook: 'pager', severities: [], types: [], customerClasses: [], changes: [] }] },
      env: { MF_WEBHOOK_OPS_SECRET: 'x'.repeat(32) },
      variable: 'config/alerts.yaml: alerts.routes.0.webhook',
    },
  ] satisfies Array<{ name: string; cfg: AlertsConfig; env: Record<string, string>; variable: string }>)(
    'fails at start on a $name, naming it, without echoing the secret',
    ({ cfg, env, variable }) => {
      let caught: unknown;
      try {
        webhookTargets(cfg, env);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(ConfigError);
      expect(caught instanceof ConfigError ? caught.variable : undefined).toBe(variable);
      expect(String(caught)).not.toContain('short');
    },
  );
});
