import { describe, expect, it } from 'vitest';
import { engineConfig, webhookTargets } from '../../src/shared/alerts/settings.js';
import { signWebhook, verifyWebhook } from '../../src/shared/alerts/webhook.js';
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

  it.each([
    { name: 'valid', ts: '1700000000', sig: REFERENCE, body: '{"a":1}', now: 1_700_000_100, out: { ok: true } },
    { name: 'body changed', ts: '1700000000', sig: REFERENCE, body: '{"a":2}', now: 1_700_000_100, out: { ok: false, reason: 'mismatch' } },
    { name: 'timestamp changed', ts: '1700000001', sig: REFERENCE, body: '{"a":1}', now: 1_700_000_100, out: { ok: false, reason: 'mismatch' } },
    { name: 'too old (replay)', ts: '1700000000', sig: REFERENCE, body: '{"a":1}', now: 1_700_000_301, out: { ok: false, reason: 'stale' } },
    { name: 'no signature', ts: '1700000000', sig: undefined, body: '{"a":1}', now: 1_700_000_000, out: { ok: false, reason: 'missing' } },
    { name: 'timestamp not a number', ts: '17e8', sig: REFERENCE, body: '{"a":1}', now: 1_700_000_000, out: { ok: false, reason: 'missing' } },
    { name: 'truncated signature', ts: '1700000000', sig: REFERENCE.slice(0, 20), body: '{"a":1}', now: 1_700_000_000, out: { ok: false, reason: 'mismatch' } },
  ])('verify: $name', ({ ts, sig, body, now, out }) => {
    expect(verifyWebhook(SECRET, { timestamp: ts, signature: sig }, body, now)).toEqual(out);
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
