/**
 * The one retry delay of meterflow: exponential from `baseMs`, doubling per attempt (0-based), capped at `maxMs`.
 * Pure, so every retry loop (Redis reconnects, InfluxDB writes, MQTT hand-offs, webhook deliveries) shares it.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  if (!(attempt > 0)) return Math.min(baseMs, maxMs);
  // 2 ** 30 already exceeds any cap in ms; clamping keeps the product finite for huge attempt counts.
  return Math.min(baseMs * 2 ** Math.min(attempt, 30), maxMs);
}
