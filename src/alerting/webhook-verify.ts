import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Verifies a meterflow alert webhook on the receiver's side. Self-contained (Node's crypto only) so receivers can
 * copy this file as it is; docs/operators.md shows it in use.
 *
 * meterflow sends `X-Meterflow-Timestamp: <unix seconds>` and `X-Meterflow-Signature: sha256=<hex>`, the
 * HMAC-SHA256 of `<timestamp>.<raw body>` under the webhook's shared secret. A request is genuine when the HMAC
 * matches (compared in constant time) and the timestamp is within `toleranceSec` of the receiver's clock either
 * way: an older one may be a captured request replayed, a newer one was made up. Within the window, dedup on the
 * Idempotency-Key header, which a retry repeats. Verify the raw body bytes, before any JSON parsing.
 */

export type WebhookVerifyFailure = 'malformed' | 'too_old' | 'too_new' | 'mismatch';
export type WebhookVerifyResult = { ok: true } | { ok: false; reason: WebhookVerifyFailure };

const TIMESTAMP_RE = /^\d{1,12}$/;
const SIGNATURE_RE = /^sha256=([0-9a-f]{64})$/;

export function verifyWebhook(
  secret: string,
  headers: { timestamp: string | undefined; signature: string | undefined },
  rawBody: string | Uint8Array,
  nowSec: number,
  toleranceSec = 300,
): WebhookVerifyResult {
  const { timestamp, signature } = headers;
  const hex = signature === undefined ? undefined : SIGNATURE_RE.exec(signature)?.[1];
  if (timestamp === undefined || !TIMESTAMP_RE.test(timestamp) || hex === undefined) return { ok: false, reason: 'malformed' };
  const ts = Number(timestamp);
  if (ts < nowSec - toleranceSec) return { ok: false, reason: 'too_old' };
  if (ts > nowSec + toleranceSec) return { ok: false, reason: 'too_new' };
  const expected = createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest();
  // Both are 32 bytes (the pattern fixed the hex length): timingSafeEqual never sees unequal lengths.
  return timingSafeEqual(expected, Buffer.from(hex, 'hex')) ? { ok: true } : { ok: false, reason: 'mismatch' };
}
