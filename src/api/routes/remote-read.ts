import { randomBytes, randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import { BillingConfig } from '../../contracts/config-billing.js';
import { METER_ID_PATTERN, ReadingPayload } from '../../contracts/reading.js';
import { loadSection, type AppConfig } from '../../shared/config.js';
import { ServiceError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { RoutePlugin } from '../app.js';
import { ErrorBody } from '../../contracts/http.js';
import { tlsOptions } from '../../shared/mqtt.js';

const RemoteReading = Type.Object({
  meterId: Type.String(),
  /** The meter's `ts`, normalised to ISO-8601 UTC. */
  ts: Type.String(),
  seq: Type.Optional(Type.Integer()),
  importWh: Type.Integer(),
  exportWh: Type.Optional(Type.Integer()),
  powerW: Type.Optional(Type.Number()),
  voltageV: Type.Optional(Type.Number()),
  currentA: Type.Optional(Type.Number()),
});

const checkReading = Compile(ReadingPayload);
/** Longest a request waits for the MQTT connection before answering 503. */
const CONNECT_WAIT_MS = 3000;

type Answer = { kind: 'reading'; payload: Record<string, unknown> } | { kind: 'error'; message: string };

/** A meter's answer: `{ requestId, …Reading }`, or `{ requestId, error }` when the meter could not read. */
function parseAnswer(raw: Buffer): { requestId: string; answer: Answer } | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const { requestId, error, ...rest }: Record<string, unknown> = Object.fromEntries(Object.entries(v));
  if (typeof requestId !== 'string') return undefined;
  if (typeof error === 'string') return { requestId, answer: { kind: 'error', message: error.slice(0, 200) } };
  return { requestId, answer: { kind: 'reading', payload: rest } };
}

function isoTs(ts: string | number): string | undefined {
  const ms = typeof ts === 'number' ? ts : Date.parse(ts);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;
}

/**
 * The API's side of on-demand reads: one MQTT connection per API process, opened on first use and subscribed
 * to every meter's responses; answers are matched to waiting requests by requestId and meter.
 */
class ReadRequester {
  private client: MqttClient | undefined;
  private subscribed: Promise<void> | undefined;
  private warned = false;
  /** requestId → the meter asked and the waiting request. */
  private readonly pending = new Map<string, { meterId: string; resolve: (a: Answer | undefined) => void }>();

  constructor(
    private readonly cfg: AppConfig['mqtt'],
    private readonly log: Logger,
  ) {}

  private connect(): MqttClient {
    if (this.client !== undefined) return this.client;
    const client = mqtt.connect(this.cfg.url, {
      clientId: `${this.cfg.clientId}-rr-${randomBytes(4).toString('hex')}`,
      username: this.cfg.username,
      password: this.cfg.password,
      ...tlsOptions(this.cfg.tls),
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 5000,
    });
    client.on('connect', () => {
      this.warned = false;
      // Clean session: subscribe again after every (re)connect.
      const sub = client.subscribeAsync('meters/+/responses', { qos: 1 }).then(() => undefined);
      sub.catch((err: unknown) => this.log.warn({ err }, 'remote-read subscribe failed'));
      this.subscribed = sub;
    });
    client.on('error', (err) => {
      // Once per outage, not once per reconnect attempt.
      if (!this.warned) this.log.warn({ err }, 'remote-read mqtt error');
      this.warned = true;
    });
    client.on('message', (topic, payload) => {
      const parsed = parseAnswer(payload);
      if (parsed === undefined) return;
      const waiting = this.pending.get(parsed.requestId);
      // Another API instance's request, one that timed out, or an answer from a meter that was not asked.
      if (waiting === undefined || topic !== `meters/${waiting.meterId}/responses`) return;
      waiting.resolve(parsed.answer);
    });
    this.client = client;
    return client;
  }

  /** Waits up to `waitMs` for the connection (just started, or the broker restarting); ServiceError if it is not there. */
  private async ready(waitMs: number): Promise<MqttClient> {
    const client = this.connect();
    if (!client.connected || this.subscribed === undefined) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          client.off('connect', done);
          resolve();
        };
        const timer = setTimeout(done, waitMs);
        client.on('connect', done);
      });
    }
    if (!client.connected || this.subscribed === undefined) throw new ServiceError('MQTT broker not connected');
    await this.subscribed;
    return client;
  }

  /** Sends the read command and waits for the answer; undefined on timeout. */
  async read(meterId: string, requestId: string, timeoutMs: number): Promise<Answer | undefined> {
    const client = await this.ready(Math.min(timeoutMs, CONNECT_WAIT_MS));
    let timer: NodeJS.Timeout | undefined;
    const answer = new Promise<Answer | undefined>((resolve) => {
      this.pending.set(requestId, { meterId, resolve });
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    try {
      await client.publishAsync(`meters/${meterId}/commands`, JSON.stringify({ cmd: 'read', requestId }), { qos: 1 });
      return await answer;
    } finally {
      clearTimeout(timer);
      this.pending.delete(requestId);
    }
  }

  /** Hands a reading to ingest, on the topic any meter publishes to. */
  async ingest(meterId: string, reading: ReadingPayload): Promise<void> {
    const client = await this.ready(CONNECT_WAIT_MS);
    await client.publishAsync(`meters/${meterId}/readings`, JSON.stringify(reading), { qos: 1 });
  }

  async close(): Promise<void> {
    for (const w of this.pending.values()) w.resolve({ kind: 'error', message: 'server shutting down' });
    if (this.client !== undefined) await this.client.endAsync();
  }
}

/**
 * On-demand remote read (scope meters:command): the command goes to `meters/{id}/commands`, the meter answers on
 * `meters/{id}/responses`, and the answer is republished on `meters/{id}/readings` so ingest takes it like any
 * other reading.
 */
export const remoteReadRoutes: RoutePlugin = async (app, deps) => {
  const cfg = loadSection('billing', BillingConfig).remoteRead;
  const log = deps.log.child({ component: 'remote-read' });
  const requester = new ReadRequester(deps.config.mqtt, log);
  app.addHook('onClose', () => requester.close());

  app.post(
    '/api/v1/meters/:id/remote-read',
    {
      preHandler: deps.auth('meters:command'),
      schema: {
        tags: ['meters'],
        summary: 'Read a meter now over MQTT; the reading is returned and ingested',
        params: Type.Object({ id: Type.String({ pattern: METER_ID_PATTERN }) }),
        querystring: Type.Object({
          timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: cfg.timeoutMs, description: `Wait less than the configured ${cfg.timeoutMs} ms` })),
        }),
        response: {
          200: Type.Object({ requestId: Type.String(), latencyMs: Type.Integer(), reading: RemoteReading }),
          400: ErrorBody,
          404: ErrorBody,
          502: ErrorBody,
          503: ErrorBody,
          504: ErrorBody,
        },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      if (!(await deps.registry.isRegistered(id))) {
        return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `meter ${id} is not in the registry` });
      }
      const timeoutMs = req.query.timeoutMs ?? cfg.timeoutMs;
      const requestId = randomUUID();
      const started = Date.now();
      const result = await requester.read(id, requestId, timeoutMs);
      if (result === undefined) {
        log.info({ meterId: id, requestId, timeoutMs }, 'remote read timed out');
        return reply.code(504).send({ statusCode: 504, error: 'Gateway Timeout', message: `meter ${id} did not answer within ${timeoutMs} ms` });
      }
      if (result.kind === 'error') {
        return reply.code(502).send({ statusCode: 502, error: 'Bad Gateway', message: `meter ${id} could not be read: ${result.message}` });
      }
      const reading = result.payload;
      if (!checkReading.Check(reading) || reading.meterId !== id) {
        log.warn({ meterId: id, requestId }, 'remote read answer is not a valid reading');
        return reply.code(502).send({ statusCode: 502, error: 'Bad Gateway', message: `meter ${id} answered with an invalid reading` });
      }
      const ts = isoTs(reading.ts);
      if (ts === undefined) return reply.code(502).send({ statusCode: 502, error: 'Bad Gateway', message: `meter ${id} answered with an invalid ts` });
      // Ingested like any other reading (the requestId is not part of the reading contract).
      await requester.ingest(id, reading);
      return { requestId, latencyMs: Date.now() - started, reading: { ...reading, ts } };
    },
  );
};
