import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HEADER_IDEMPOTENCY, HEADER_SIGNATURE, HEADER_TIMESTAMP, verifyWebhook } from '../../src/alerting/webhook.js';

/** One request as the receiver saw it. */
export interface ReceivedRequest {
  /** 1-based arrival order. */
  n: number;
  idempotencyKey: string;
  body: string;
  /** Parsed JSON body (unknown: tests check what they need). */
  json: unknown;
  verified: boolean;
  status: number;
}

export interface WebhookReceiver {
  readonly url: string;
  /** Every request, in arrival order (retries included). */
  readonly requests: ReceivedRequest[];
  /** Requests the receiver accepted (2xx), deduplicated by idempotency key, as a real integration would do. */
  readonly deliveries: Map<string, ReceivedRequest>;
  close(): Promise<void>;
}

/**
 * Answers for request n (1-based): a status code, or a promise of one (to hold the response open, e.g. while the
 * test kills the sender).
 */
export type Responder = (n: number, idempotencyKey: string) => number | Promise<number>;

function read(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const header = (req: IncomingMessage, name: string): string | undefined => {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

/** A real local HTTP receiver that verifies signatures and dedups on the idempotency key. */
export async function startWebhookReceiver(secret: string, respond: Responder = () => 200): Promise<WebhookReceiver> {
  const requests: ReceivedRequest[] = [];
  const deliveries = new Map<string, ReceivedRequest>();
  const server = createServer((req, res) => {
    void (async () => {
      const body = await read(req);
      const n = requests.length + 1;
      const idempotencyKey = header(req, HEADER_IDEMPOTENCY) ?? '';
      const v = verifyWebhook(
        secret,
        { timestamp: header(req, HEADER_TIMESTAMP), signature: header(req, HEADER_SIGNATURE) },
        body,
        Math.floor(Date.now() / 1000),
      );
      let json: unknown = null;
      try {
        json = JSON.parse(body);
      } catch {
        json = null;
      }
      const entry: ReceivedRequest = { n, idempotencyKey, body, json, verified: v.ok, status: 0 };
      requests.push(entry);
      const status = v.ok ? await respond(n, idempotencyKey) : 401;
      entry.status = status;
      if (status >= 200 && status < 300 && !deliveries.has(idempotencyKey)) deliveries.set(idempotencyKey, entry);
      res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
    })().catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = addr !== null && typeof addr === 'object' ? (addr satisfies AddressInfo).port : 0;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    requests,
    deliveries,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
