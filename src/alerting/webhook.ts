import { createHmac } from 'node:crypto';

/**
 * Signed webhooks. The receiver recomputes HMAC-SHA256(secret, `${timestamp}.${body}`) and compares it with the
 * X-Meterflow-Signature header (`sha256=<hex>`), rejects timestamps too far from its clock (replay), and dedups on
 * the Idempotency-Key header (also in the body): a retry after a lost response carries the same key. The receiver's
 * check is verifyWebhook (./webhook-verify.ts).
 */

export const HEADER_TIMESTAMP = 'x-meterflow-timestamp';
export const HEADER_SIGNATURE = 'x-meterflow-signature';
export const HEADER_IDEMPOTENCY = 'idempotency-key';

export function signWebhook(secret: string, timestampSec: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestampSec}.${body}`).digest('hex')}`;
}

/** The receiver's side lives in its own file, which receivers can copy (docs/operators.md). */
export { verifyWebhook, type WebhookVerifyFailure, type WebhookVerifyResult } from './webhook-verify.js';

export class DeliveryError extends Error {
  override name = 'DeliveryError';
  constructor(
    message: string,
    /** False when retrying cannot help (the receiver refused the request itself). */
    readonly retriable: boolean,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface WebhookTarget {
  name: string;
  url: string;
  secret: string;
}

/** POSTs one signed body; resolves on 2xx, throws DeliveryError otherwise. */
export async function deliverWebhook(target: WebhookTarget, body: string, idempotencyKey: string, timeoutMs: number, nowSec: number): Promise<number> {
  let res: Response;
  try {
    res = await fetch(target.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'meterflow-alerts',
        [HEADER_IDEMPOTENCY]: idempotencyKey,
        [HEADER_TIMESTAMP]: String(nowSec),
        [HEADER_SIGNATURE]: signWebhook(target.secret, nowSec, body),
      },
      body,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'manual',
    });
  } catch (err) {
    throw new DeliveryError(`webhook ${target.name}: ${err instanceof Error ? err.message : String(err)}`, true, undefined, { cause: err });
  }
  // Drain so the connection can be reused; the content is of no interest.
  await res.arrayBuffer().catch(() => undefined);
  if (res.status >= 200 && res.status < 300) return res.status;
  // 3xx and other 4xx: the URL or the request is wrong, retrying cannot help.
  const retriable = res.status >= 500 || res.status === 408 || res.status === 429;
  throw new DeliveryError(`webhook ${target.name} answered ${res.status}`, retriable, res.status);
}
