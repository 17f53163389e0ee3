import { keys, type RedisClient } from '../shared/redis.js';
import type { Rejection } from './parse.js';

export interface DeadLetter {
  reason: string;
  detail: string;
  topic: string;
  payload: string;
  ts: number;
  source: string;
}

/** Bounded copy of the offending input: enough to debug, never a way to fill Redis. */
export function truncate(s: string, maxBytes: number): string {
  const b = Buffer.from(s, 'utf8');
  return b.length <= maxBytes ? s : `${b.subarray(0, maxBytes).toString('utf8')}…[${b.length} bytes]`;
}

/**
 * The element a rejection names, as JSON for the dead letter. Total: an element JSON cannot serialise (a cycle is
 * impossible from JSON.parse, but nesting deep enough overflows the stack) is described instead, so rejecting
 * input can never fail on the input.
 */
export function elementText(item: unknown, maxBytes: number): string {
  try {
    return truncate(JSON.stringify(item) ?? String(item), maxBytes);
  } catch (err) {
    return `[element not serialisable: ${err instanceof Error ? err.message.slice(0, 120) : 'error'}]`;
  }
}

/** Longest topic kept in a dead letter (ours are far shorter). */
export const MAX_TOPIC_BYTES = 256;

export class DeadLetterQueue {
  constructor(
    private readonly redis: RedisClient,
    private readonly opts: { maxLen: number; payloadBytes: number; source: string },
  ) {}

  /** One entry per rejection; a whole-message rejection keeps the raw payload, an element keeps the element. */
  async add(topic: string, raw: Buffer, rejections: Rejection[], nowMs: number): Promise<void> {
    if (rejections.length === 0) return;
    const rawText = raw.subarray(0, this.opts.payloadBytes + 16).toString('utf8');
    // A topic may be 64 KiB long (MQTT): kept bounded like the payload, so every dead letter is.
    const topicText = truncate(topic, MAX_TOPIC_BYTES);
    await Promise.all(
      rejections.map((r) => {
        const payload = r.item === undefined ? truncate(rawText, this.opts.payloadBytes) : elementText(r.item, this.opts.payloadBytes);
        const fields = ['reason', r.reason, 'detail', r.detail, 'topic', topicText, 'payload', payload, 'ts', String(nowMs), 'source', this.opts.source];
        if (r.index !== undefined) fields.push('index', String(r.index));
        if (r.meterId !== undefined) fields.push('meterId', r.meterId);
        return this.redis.xadd(keys.dlq, 'MAXLEN', '~', String(this.opts.maxLen), '*', ...fields);
      }),
    );
  }
}
