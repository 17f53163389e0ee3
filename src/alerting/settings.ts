import type { AlertsConfig } from '../contracts/config-alerts.js';
import type { EngineConfig } from '../domain/alert-engine.js';
import type { RoutingConfig } from '../domain/alert-routing.js';
import { ConfigError } from '../shared/errors.js';
import type { Env } from '../shared/config-env.js';
import type { WebhookTarget } from './webhook.js';

const HOUR = 3_600_000;

export function engineConfig(cfg: AlertsConfig): EngineConfig {
  return {
    lifecycle: {
      clearIntervals: cfg.lifecycle.clearIntervals,
      flapWindowMs: cfg.lifecycle.flapWindowHours * HOUR,
      holdWallMs: cfg.lifecycle.holdWallSeconds * 1000,
      types: cfg.types,
    },
    severity: { types: cfg.types, classRaise: cfg.classRaise },
    outage: cfg.outage,
    defaultIntervalMs: cfg.lifecycle.defaultIntervalMinutes * 60_000,
  };
}

export function routingConfig(cfg: AlertsConfig, timezone: string): RoutingConfig {
  return { routes: cfg.routes, quietHours: cfg.quietHours, timezone };
}

/**
 * Webhook targets with their secrets from the environment. Fails at start, naming the variable, when a secret is
 * missing or a route names an unknown webhook.
 */
export function webhookTargets(cfg: AlertsConfig, env: Env): Map<string, WebhookTarget> {
  const out = new Map<string, WebhookTarget>();
  for (const w of cfg.webhooks) {
    if (out.has(w.name)) throw new ConfigError(`config/alerts.yaml: alerts.webhooks.${w.name}`, 'unique webhook names');
    const secret = env[w.secretEnv];
    if (secret === undefined || secret.length < 16) {
      throw new ConfigError(w.secretEnv, `the HMAC secret of webhook "${w.name}" (at least 16 characters)`);
    }
    out.set(w.name, { name: w.name, url: w.url, secret });
  }
  cfg.routes.forEach((r, i) => {
    if (!out.has(r.webhook))
      throw new ConfigError(
        `config/alerts.yaml: alerts.routes.${i}.webhook`,
        `one of the configured webhooks (${[...out.keys()].join(', ') || 'none'}), got "${r.webhook}"`,
      );
  });
  return out;
}
