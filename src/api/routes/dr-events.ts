import { createHash, randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import { Type } from 'typebox';
import { NOTIFY_BACKOFF } from '../../contracts/alert.js';
import type { DrConfig } from '../../contracts/config-dr.js';
import {
  DrEventCreateBody,
  DrEventCreated,
  type DrEventRecord,
  DrEventPage,
  DrEventView,
  type DrSelector,
  DR_EVENT_ID_PATTERN,
  toDrEventView,
  type DrNotifyJob,
} from '../../contracts/dr.js';
import { ErrorBody } from '../../contracts/http.js';
import { DAY_MS, gridOffsetMs } from '../../domain/local-time.js';
import type { DrStore } from '../../shared/dr-store.js';
import type { RegistryStore } from '../../shared/registry.js';
import type { ApiApp, RoutePlugin } from '../app.js';
import { BadField } from '../day-range.js';

/**
 * Demand-response events: POST /api/v1/dr/events (scope dr:write; idempotent by Idempotency-Key or a client-given id;
 * participants resolved from the registry; notices enqueued for the alerts role's signed webhooks) and the GETs of
 * events. Registered by the `drRoutes` plugin (./dr.ts).
 */

const WITH_OFFSET = /(Z|[+-]\d{2}:?\d{2})$/i;

function parseTime(raw: string, field: string): number {
  const ms = Date.parse(raw);
  if (!WITH_OFFSET.test(raw) || !Number.isFinite(ms)) throw new BadField(field, `not an ISO-8601 time with an offset: ${raw}`);
  return ms;
}

/** The selector the body gives: exactly one of customerIds, feederId, transformerId. */
function selectorOf(body: DrEventCreateBody): DrSelector {
  const given = (['customerIds', 'feederId', 'transformerId'] as const).filter((k) => body[k] !== undefined);
  const [first, second] = given;
  if (first === undefined) throw new BadField('body.customerIds', 'exactly one of customerIds, feederId, transformerId is required');
  if (second !== undefined) throw new BadField(`body.${second}`, `exactly one of customerIds, feederId, transformerId, got ${given.join(' and ')}`);
  if (body.customerIds !== undefined) return { customerIds: [...new Set(body.customerIds)] };
  if (body.feederId !== undefined) return { feederId: body.feederId };
  return { transformerId: body.transformerId ?? '' };
}

/** The participants (customerIds, sorted) of a selector from the registry; a 400 naming the field when none. */
async function resolveParticipants(registry: RegistryStore, sel: DrSelector, original: readonly string[], max: number): Promise<string[]> {
  let out: string[];
  let field: string;
  if ('customerIds' in sel) {
    field = 'body.customerIds';
    if (sel.customerIds.length > max) throw new BadField(field, `at most ${max} participants`);
    const meters = await Promise.all(sel.customerIds.map((c) => registry.metersOfCustomer(c)));
    const unknown = sel.customerIds.findIndex((_, i) => (meters[i] ?? []).length === 0);
    if (unknown >= 0) {
      // Named by its place in the body (the selector keeps the body's order, repeats dropped).
      const name = sel.customerIds[unknown] ?? '';
      throw new BadField(`body.customerIds.${original.indexOf(name)}`, `customer ${name} is not in the registry`);
    }
    out = [...sel.customerIds].sort();
  } else {
    const feeder = 'feederId' in sel;
    field = feeder ? 'body.feederId' : 'body.transformerId';
    const id = feeder ? sel.feederId : sel.transformerId;
    const meters = feeder ? await registry.metersOfFeeder(id) : await registry.metersOfTransformer(id);
    if (meters.length === 0) throw new BadField(field, `no registered meters on ${feeder ? 'feeder' : 'transformer'} ${id}`);
    out = [...new Set(meters.map((m) => m.customerId))].sort();
  }
  if (out.length > max) throw new BadField(field, `the selection has ${out.length} participants, at most ${max}`);
  return out;
}

/** What makes two creations the same request (a repeat with the same Idempotency-Key or id must match it). */
function fingerprint(startMs: number, endMs: number, sel: DrSelector, kw: number): string {
  return createHash('sha256')
    .update(JSON.stringify([startMs, endMs, sel, kw]))
    .digest('base64url');
}

/** BullMQ job ids may not hold ':'; '%' is escaped first so the mapping stays one to one. */
const jobIdPart = (s: string): string => s.replaceAll('%', '%25').replaceAll(':', '%3A');

/** One notify job per participant and webhook; deterministic ids, so a repeated creation enqueues nothing twice. */
async function enqueueNotices(
  queue: Queue,
  registry: RegistryStore,
  e: DrEventRecord,
  webhooks: readonly string[],
  retry: { attempts: number; backoffMs: number },
  now: number,
): Promise<void> {
  const meters = await Promise.all(e.customerIds.map((c) => registry.metersOfCustomer(c)));
  const jobs = e.customerIds.flatMap((customerId, i) =>
    webhooks.map((webhook) => {
      const idempotencyKey = `dr.${e.id}.${customerId}`;
      const data: DrNotifyJob = {
        kind: 'dr',
        webhook,
        idempotencyKey,
        at: now,
        dr: {
          eventId: e.id,
          start: new Date(e.startMs).toISOString(),
          end: new Date(e.endMs).toISOString(),
          requestedReductionKw: e.requestedReductionKw,
          participants: e.customerIds.length,
          customerId,
          meterIds: (meters[i] ?? []).map((m) => m.meterId),
        },
      };
      return {
        name: 'dr',
        data,
        opts: {
          jobId: `dr.${e.id}.${jobIdPart(customerId)}.${webhook}`,
          attempts: retry.attempts,
          backoff: { type: NOTIFY_BACKOFF, delay: retry.backoffMs },
          removeOnComplete: { age: 86_400, count: 100_000 },
          removeOnFail: { age: 7 * 86_400 },
        },
      };
    }),
  );
  for (let i = 0; i < jobs.length; i += 1000) await queue.addBulk(jobs.slice(i, i + 1000));
}

export interface EventRouteParts {
  cfg: DrConfig;
  gridMs: number;
  zone: string;
  store: DrStore;
  queue: Queue | undefined;
  retry: { attempts: number; backoffMs: number };
}

/** POST (create, idempotent), list and get. */
export function registerEventRoutes(app: ApiApp, deps: Parameters<RoutePlugin>[1], p: EventRouteParts): void {
  const { cfg, gridMs, zone, store, queue, retry } = p;
  const limits = cfg.events;
  const gridOffset = gridOffsetMs(zone, gridMs);

  app.post(
    '/api/v1/dr/events',
    {
      preHandler: deps.auth('dr:write'),
      schema: {
        tags: ['dr'],
        summary:
          'Create a demand-response event for a list of customers, a feeder or a transformer. Participants of an event that has not ended are notified (signed webhooks); one in the past is recorded and settled from stored data. Idempotent with an Idempotency-Key header or a client-given id',
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 255 })) }),
        body: DrEventCreateBody,
        response: { 200: DrEventCreated, 201: DrEventCreated, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 409: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      const body = req.body;
      const now = Date.now();
      const startMs = parseTime(body.start, 'body.start');
      const endMs = parseTime(body.end, 'body.end');
      for (const [ms, field] of [
        [startMs, 'body.start'],
        [endMs, 'body.end'],
      ] as const)
        if ((((ms - gridOffset) % gridMs) + gridMs) % gridMs !== 0) throw new BadField(field, `not on the ${limits.gridMinutes}-minute grid`);
      if (endMs <= startMs) throw new BadField('body.end', '`end` must be after `start`');
      if (endMs - startMs > limits.maxDurationHours * 3_600_000) throw new BadField('body.end', `an event lasts at most ${limits.maxDurationHours} h`);
      if (startMs > now + limits.maxAheadDays * DAY_MS) throw new BadField('body.start', `an event starts at most ${limits.maxAheadDays} days ahead`);
      if (startMs < now - limits.maxPastDays * DAY_MS)
        throw new BadField('body.start', `an event recorded after the fact started at most ${limits.maxPastDays} days ago`);
      const selector = selectorOf(body);
      // Resolved before any key is claimed: a request refused here leaves no claim behind to block its correction.
      const customerIds = await resolveParticipants(deps.registry, selector, body.customerIds ?? [], limits.maxParticipants);
      const fp = fingerprint(startMs, endMs, selector, body.requestedReductionKw);
      const tokenId = req.tokenId ?? 'unknown';

      // Idempotency: the client's id, or its Idempotency-Key (per token, a day), names the event; a repeat of the same
      // request answers it again (and completes its notification if the first attempt stopped short).
      let id = body.id ?? randomBytes(16).toString('base64url');
      const key = req.headers['idempotency-key'];
      if (body.id === undefined && key !== undefined) {
        const claim = await store.claimIdempotency(tokenId, createHash('sha256').update(key).digest('base64url'), id, fp);
        if (claim.kind === 'conflict') throw new BadField('headers.idempotency-key', `used for another request (event ${claim.id})`, 409);
        if (claim.kind === 'same') id = claim.id;
      }
      let record = await store.get(id);
      let replayed = record !== undefined;
      if (record === undefined) {
        const fresh: DrEventRecord = {
          id,
          startMs,
          endMs,
          selector,
          customerIds,
          requestedReductionKw: body.requestedReductionKw,
          createdAt: now,
          createdBy: tokenId,
          notified: false,
          recordedAfter: endMs <= now,
        };
        if (await store.create(fresh)) record = fresh;
        else {
          record = await store.get(id);
          replayed = true;
        }
      }
      if (record === undefined) throw new Error(`event ${id} vanished while being created`);
      if (replayed && fingerprint(record.startMs, record.endMs, record.selector, record.requestedReductionKw) !== fp)
        throw new BadField('body.id', `event ${id} exists with another window, selection or request`, 409);
      // Notified while the event has not ended: a repeat after the end does not send a notice too late.
      if (queue !== undefined && !record.notified && record.endMs > now) {
        await enqueueNotices(queue, deps.registry, record, cfg.notify.webhooks, retry, now);
        record = await store.markNotified(record);
      }
      req.log.info({ eventId: record.id, participants: record.customerIds.length, notified: record.notified, replayed }, 'demand-response event');
      return reply.code(replayed ? 200 : 201).send({ id: record.id, notified: record.notified, participants: record.customerIds.length, replayed });
    },
  );

  app.get(
    '/api/v1/dr/events',
    {
      preHandler: deps.auth('insights:read'),
      schema: {
        tags: ['dr'],
        summary: 'Demand-response events, latest start first; cursor paging',
        querystring: Type.Object(
          {
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
            cursor: Type.Optional(Type.String({ pattern: '^\\d{1,9}$' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: DrEventPage, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 503: ErrorBody },
      },
    },
    async (req) => {
      const page = await store.list(req.query.limit ?? 50, Number(req.query.cursor ?? '0'));
      return { items: page.items.map(toDrEventView), nextCursor: page.nextCursor === null ? null : String(page.nextCursor) };
    },
  );

  app.get(
    '/api/v1/dr/events/:id',
    {
      preHandler: deps.auth('insights:read'),
      schema: {
        tags: ['dr'],
        summary: 'One demand-response event',
        params: Type.Object({ id: Type.String({ pattern: DR_EVENT_ID_PATTERN }) }),
        response: { 200: DrEventView, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      const e = await store.get(req.params.id);
      if (e === undefined) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `demand-response event ${req.params.id} not found` });
      return toDrEventView(e);
    },
  );
}
