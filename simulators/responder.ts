import type { MqttClient } from 'mqtt';

/** What a meter answers to a read command (see Simulation.readAnswer). */
export type ReadAnswerFn = (meterId: string) => { reading: string } | { error: string } | undefined;

export interface ReadResponder {
  /** Commands answered so far. */
  readonly answered: number;
  close(): Promise<void>;
}

const COMMAND_TOPIC = /^meters\/([^/]+)\/commands$/;

/** Parses `{"cmd":"read","requestId":"…"}`; anything else is not a read command. */
export function parseReadCommand(payload: Buffer | string): string | undefined {
  let v: unknown;
  try {
    v = JSON.parse(payload.toString());
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== 'object' || !('cmd' in v) || !('requestId' in v)) return undefined;
  const { cmd, requestId } = v;
  return cmd === 'read' && typeof requestId === 'string' && requestId.length > 0 && requestId.length <= 128 ? requestId : undefined;
}

/** The response payload: the reading with the requestId added, or `{ requestId, error }`. */
export function answerPayload(requestId: string, answer: { reading: string } | { error: string }): string {
  if ('error' in answer) return JSON.stringify({ requestId, error: answer.error });
  // The reading is a JSON object we built ourselves: add the field before its closing brace.
  return `${answer.reading.slice(0, -1)},"requestId":${JSON.stringify(requestId)}}`;
}

/**
 * The simulated meters' side of on-demand reads: subscribes `meters/+/commands` and answers each
 * `{"cmd":"read","requestId"}` on `meters/{id}/responses`.
 */
export async function startReadResponder(client: MqttClient, answerFor: ReadAnswerFn): Promise<ReadResponder> {
  let answered = 0;
  const onMessage = (topic: string, payload: Buffer) => {
    const meterId = COMMAND_TOPIC.exec(topic)?.[1];
    if (meterId === undefined) return;
    const requestId = parseReadCommand(payload);
    if (requestId === undefined) return;
    const answer = answerFor(meterId);
    if (answer === undefined) return;
    answered++;
    client.publish(`meters/${meterId}/responses`, answerPayload(requestId, answer), { qos: 1 });
  };
  client.on('message', onMessage);
  await client.subscribeAsync('meters/+/commands', { qos: 1 });
  let closed = false;
  return {
    get answered() {
      return answered;
    },
    async close() {
      if (closed) return;
      closed = true;
      client.off('message', onMessage);
      if (client.connected) await client.unsubscribeAsync('meters/+/commands').catch(() => undefined);
    },
  };
}
