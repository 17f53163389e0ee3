import { UnrecoverableError, type Job } from 'bullmq';
import { Compile } from 'typebox/compile';
import { type DeadLetter, NotifyJob, toAlertView, type WebhookBody } from '../contracts/alert.js';
import type { DrWebhookBody } from '../contracts/dr.js';
import type { Logger } from '../shared/logger.js';
import type { AlertStore } from '../alerting/store.js';
import { DeliveryError, deliverWebhook, type WebhookTarget } from '../alerting/webhook.js';

const checkJob = Compile(NotifyJob);

export interface NotifierDeps {
  targets: ReadonlyMap<string, WebhookTarget>;
  timeoutMs: number;
  store: AlertStore;
  log: Logger;
  clock?: () => number;
  onResult?: (result: 'delivered' | 'retry' | 'dead') => void;
}

/** The signed body of a job: an alert change (WebhookBody) or a demand-response event (DrWebhookBody). */
export function webhookBody(job: NotifyJob): string {
  const at = new Date(job.at).toISOString();
  if (job.kind === 'dr') {
    const { dr } = job;
    const body: DrWebhookBody = {
      type: 'dr.event',
      idempotencyKey: job.idempotencyKey,
      at,
      event: { id: dr.eventId, start: dr.start, end: dr.end, requestedReductionKw: dr.requestedReductionKw, participants: dr.participants },
      participant: { customerId: dr.customerId, meterIds: dr.meterIds },
    };
    return JSON.stringify(body);
  }
  const body: WebhookBody = { idempotencyKey: job.idempotencyKey, change: job.change, at, alert: toAlertView(job.alert) };
  return JSON.stringify(body);
}

/** What a dead letter records of a job. */
function deadLetterMeta(job: NotifyJob): { webhook: string; idempotencyKey: string; alertId: string; change: DeadLetter['change'] } {
  return job.kind === 'dr'
    ? { webhook: job.webhook, idempotencyKey: job.idempotencyKey, alertId: job.dr.eventId, change: 'dr_event' }
    : { webhook: job.webhook, idempotencyKey: job.idempotencyKey, alertId: job.alert.id, change: job.change };
}

/**
 * The `notify` queue's processor: one signed POST per job. Transient failures throw and BullMQ retries them with
 * exponential backoff; after the last attempt, or when the receiver refuses the request for good, the delivery is
 * recorded as a dead letter (visible in the API) and the job fails.
 */
export function notifyProcessor(deps: NotifierDeps): (job: Job) => Promise<{ status: number }> {
  const clock = deps.clock ?? Date.now;
  const log = deps.log;

  async function dead(
    job: Job,
    data: { webhook: string; idempotencyKey: string; alertId: string; change: DeadLetter['change'] },
    error: string,
  ): Promise<void> {
    await deps.store.addDeadLetter({
      jobId: job.id ?? '',
      webhook: data.webhook,
      idempotencyKey: data.idempotencyKey,
      alertId: data.alertId,
      change: data.change,
      attempts: job.attemptsMade + 1,
      error: error.slice(0, 500),
      failedAt: new Date(clock()).toISOString(),
    });
    deps.onResult?.('dead');
    log.error({ jobId: job.id, webhook: data.webhook, alertId: data.alertId, attempts: job.attemptsMade + 1, error }, 'notification dead-lettered');
  }

  return async (job) => {
    const data: unknown = job.data;
    if (!checkJob.Check(data)) {
      await dead(job, { webhook: 'unknown', idempotencyKey: job.id ?? '', alertId: 'unknown', change: 'opened' }, 'malformed notify job');
      throw new UnrecoverableError('malformed notify job');
    }
    const meta = deadLetterMeta(data);
    const target = deps.targets.get(data.webhook);
    if (target === undefined) {
      await dead(job, meta, `webhook ${data.webhook} is not configured`);
      throw new UnrecoverableError(`webhook ${data.webhook} is not configured`);
    }
    try {
      const status = await deliverWebhook(target, webhookBody(data), data.idempotencyKey, deps.timeoutMs, Math.floor(clock() / 1000));
      deps.onResult?.('delivered');
      log.debug({ jobId: job.id, webhook: data.webhook, status, attempt: job.attemptsMade + 1 }, 'notification delivered');
      return { status };
    } catch (err) {
      const retriable = err instanceof DeliveryError ? err.retriable : true;
      const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      const message = err instanceof Error ? err.message : String(err);
      if (!retriable || last) {
        await dead(job, meta, message);
        if (!retriable) throw new UnrecoverableError(message);
        throw err;
      }
      deps.onResult?.('retry');
      log.warn({ jobId: job.id, webhook: data.webhook, attempt: job.attemptsMade + 1, err }, 'notification failed, will retry');
      throw err;
    }
  };
}
