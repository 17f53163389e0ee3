import type { AnomalyType, Severity } from '../contracts/events.js';
import { SEVERITIES } from '../contracts/events.js';
import type { CustomerClass } from '../contracts/registry.js';
import { CUSTOMER_CLASSES } from '../contracts/registry.js';

export interface SeverityConfig {
  /** Per type: replaces the severity suggested by the detection rule. */
  types: Partial<Record<AnomalyType, { severity?: Severity }>>;
  /** Levels added per customer class (may be negative). */
  classRaise: Partial<Record<CustomerClass, number>>;
}

export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}

/** Moves `s` by `levels`, clamped to info..critical. */
export function raiseSeverity(s: Severity, levels: number): Severity {
  const i = Math.min(SEVERITIES.length - 1, Math.max(0, severityRank(s) + levels));
  return SEVERITIES[i] ?? s;
}

export function maxSeverity(a: Severity, b: Severity): Severity {
  return severityRank(a) >= severityRank(b) ? a : b;
}

/** Registry class names arrive as plain strings on events; anything unknown counts as no class. */
export function parseCustomerClass(c: string | null | undefined): CustomerClass | null {
  return CUSTOMER_CLASSES.find((k) => k === c) ?? null;
}

/** Severity of an alert: the rule's (or the type's configured) severity, raised for the customer class. */
export function alertSeverity(rule: Severity, type: AnomalyType, customerClass: CustomerClass | null, cfg: SeverityConfig): Severity {
  const base = cfg.types[type]?.severity ?? rule;
  return raiseSeverity(base, customerClass === null ? 0 : (cfg.classRaise[customerClass] ?? 0));
}

/**
 * BullMQ priority of a notification (1 = first). Critical customers go before everyone, then by severity,
 * so a storm of warnings never delays the hospital's alarm.
 */
export function notifyPriority(severity: Severity, involvesCriticalCustomer: boolean): number {
  if (involvesCriticalCustomer) return 1;
  return 2 + (SEVERITIES.length - 1 - severityRank(severity));
}
