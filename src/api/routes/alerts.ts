import { Type } from 'typebox';
import {
  ALERT_STATES,
  AlertActionBody,
  AlertAssignBody,
  AlertCommentBody,
  AlertHistoryPage,
  AlertIdParams,
  AlertListQuery,
  AlertPage,
  type AlertState,
  AlertView,
  DeadLetterPage,
  toAlertView,
  toHistoryView,
} from '../../contracts/alert.js';
import { AlertsConfig } from '../../contracts/config-alerts.js';
import { type OperatorOutcomeView, createAlertService } from '../../alerting/service.js';
import { loadSection } from '../../shared/config.js';
import type { RoutePlugin } from '../app.js';
import { ErrorBody } from '../../contracts/http.js';

const ID_RE = /^[0-9a-z]{9}-[0-9a-f]{16}$/;

const encodeCursor = (id: string): string => Buffer.from(id, 'utf8').toString('base64url');
function decodeCursor(c: string): string | undefined {
  const id = Buffer.from(c, 'base64url').toString('utf8');
  return ID_RE.test(id) ? id : undefined;
}

/** ISO-8601 or epoch milliseconds. */
function parseSince(s: string): number | undefined {
  const ms = /^\d{1,15}$/.test(s) ? Number(s) : Date.parse(s);
  return Number.isFinite(ms) ? ms : undefined;
}

const badRequest = (message: string) => ({ statusCode: 400, error: 'Bad Request', message });
const notFound = (id: string) => ({ statusCode: 404, error: 'Not Found', message: `alert ${id} not found` });

/** `state=open,acknowledged` (the schema's pattern already checked each name). */
function parseStates(s: string): AlertState[] {
  return ALERT_STATES.filter((st) => s.split(',').includes(st));
}

/** An optional comment: blank is none. */
const commentOf = (c: string | undefined): string | null => (c === undefined || c.trim() === '' ? null : c);

/**
 * Alerts: list (filters, cursor paging; alerts an outage covers hidden unless asked for), get, history,
 * acknowledge, resolve, assign, comment; dead-lettered notifications. Reading needs any valid token, changing needs
 * `alerts:write`. Changes go through the same atomic path as the alerts role, so an operator and the pipeline never
 * overwrite each other, and each is written to the alert's history in the same step.
 */
export const alertRoutes: RoutePlugin = async (app, deps) => {
  const cfg = loadSection('alerts', AlertsConfig);
  const { store, service } = createAlertService(deps.redis, deps.registry, cfg, deps.config.streamShards, deps.log.child({ component: 'api-alerts' }));

  app.get(
    '/api/v1/alerts',
    {
      preHandler: deps.auth(),
      schema: {
        tags: ['alerts'],
        summary:
          'List alerts, newest first (by first event time); filters combine; cursor paging. Alerts an outage covers are hidden unless `suppressed` asks for them',
        querystring: AlertListQuery,
        response: { 200: AlertPage, 400: ErrorBody },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const since = q.since === undefined ? undefined : parseSince(q.since);
      if (q.since !== undefined && since === undefined) return reply.code(400).send(badRequest('since: expected an ISO-8601 time or epoch milliseconds'));
      const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
      if (q.cursor !== undefined && cursor === undefined) return reply.code(400).send(badRequest('cursor: not a cursor from this API'));
      const filter = {
        state: q.state === undefined ? undefined : parseStates(q.state),
        type: q.type,
        severity: q.severity,
        subject: q.subject,
        since,
        feederId: q.feeder,
        transformerId: q.transformer,
        customerClass: q.class,
        suppressed: q.suppressed ?? 'exclude',
      };
      const page = await store.list(filter, q.limit ?? 100, cursor);
      return { items: page.items.map(toAlertView), nextCursor: page.nextCursor === null ? null : encodeCursor(page.nextCursor) };
    },
  );

  app.get(
    '/api/v1/alerts/:id',
    {
      preHandler: deps.auth(),
      schema: { tags: ['alerts'], summary: 'One alert', params: AlertIdParams, response: { 200: AlertView, 404: ErrorBody } },
    },
    async (req, reply) => {
      const a = ID_RE.test(req.params.id) ? await store.get(req.params.id) : undefined;
      if (a === undefined) return reply.code(404).send(notFound(req.params.id));
      return toAlertView(a);
    },
  );

  app.get(
    '/api/v1/alerts/:id/history',
    {
      preHandler: deps.auth(),
      schema: {
        tags: ['alerts'],
        summary: "An alert's history, oldest first: opened, escalated, reopened, acknowledged, assigned, commented, resolved (last 200)",
        params: AlertIdParams,
        response: { 200: AlertHistoryPage, 404: ErrorBody },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      const a = ID_RE.test(id) ? await store.get(id) : undefined;
      if (a === undefined) return reply.code(404).send(notFound(id));
      return { items: (await store.history(id)).map(toHistoryView) };
    },
  );

  /** 200 with the alert, 404, or 409 when the alert is resolved and the action needs it open. */
  const answer = (id: string, r: OperatorOutcomeView) => {
    if (r.status === 'not-found') return { code: 404, body: notFound(id) } as const;
    if (r.status === 'conflict') return { code: 409, body: { statusCode: 409, error: 'Conflict', message: `alert ${id} is ${r.alert.state}` } } as const;
    return { code: 200, body: toAlertView(r.alert) } as const;
  };

  for (const action of ['ack', 'resolve'] as const) {
    app.post(
      `/api/v1/alerts/:id/${action}`,
      {
        preHandler: deps.auth('alerts:write'),
        schema: {
          tags: ['alerts'],
          summary: action === 'ack' ? 'Acknowledge an open alert (idempotent)' : 'Resolve an alert (idempotent)',
          params: AlertIdParams,
          // The body is optional: `null` lets a bare POST through validation.
          body: Type.Union([AlertActionBody, Type.Null()]),
          response: { 200: AlertView, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req, reply) => {
        const id = req.params.id;
        if (!ID_RE.test(id)) return reply.code(404).send(notFound(id));
        const by = req.body?.by ?? 'operator';
        const r = await service.operator(id, { kind: action, by }, { tokenId: req.tokenId ?? null, comment: commentOf(req.body?.comment) });
        const a = answer(id, r);
        return reply.code(a.code).send(a.body);
      },
    );
  }

  app.post(
    '/api/v1/alerts/:id/assign',
    {
      preHandler: deps.auth('alerts:write'),
      schema: {
        tags: ['alerts'],
        summary: 'Assign an alert that is not resolved (assigning the current assignee again changes nothing)',
        params: AlertIdParams,
        body: AlertAssignBody,
        response: { 200: AlertView, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      if (!ID_RE.test(id)) return reply.code(404).send(notFound(id));
      const by = req.body.by ?? 'operator';
      const r = await service.operator(
        id,
        { kind: 'assign', by, assignee: req.body.assignee },
        { tokenId: req.tokenId ?? null, comment: commentOf(req.body.comment) },
      );
      const a = answer(id, r);
      return reply.code(a.code).send(a.body);
    },
  );

  app.post(
    '/api/v1/alerts/:id/comment',
    {
      preHandler: deps.auth('alerts:write'),
      schema: {
        tags: ['alerts'],
        summary: "Add a comment to an alert's history (any state)",
        params: AlertIdParams,
        body: AlertCommentBody,
        response: { 200: AlertView, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      if (!ID_RE.test(id)) return reply.code(404).send(notFound(id));
      const text = commentOf(req.body.text);
      if (text === null) return reply.code(400).send(badRequest('text: must not be blank'));
      const r = await service.operator(id, { kind: 'comment', by: req.body.by ?? 'operator' }, { tokenId: req.tokenId ?? null, comment: text });
      const a = answer(id, r);
      return reply.code(a.code).send(a.body);
    },
  );

  app.get(
    '/api/v1/notifications/dead-letters',
    {
      preHandler: deps.auth(),
      schema: {
        tags: ['alerts'],
        summary: 'Webhook deliveries that used up their attempts, newest first',
        querystring: Type.Object({
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
          cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,9}$' })),
        }),
        response: { 200: DeadLetterPage, 400: ErrorBody },
      },
    },
    async (req) => {
      const page = await store.deadLetters(req.query.limit ?? 100, req.query.cursor === undefined ? 0 : Number(req.query.cursor));
      return { items: page.items, nextCursor: page.nextCursor === null ? null : String(page.nextCursor) };
    },
  );
};
