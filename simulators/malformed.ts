import type { RejectReason } from '../src/contracts/reading.js';
import type { MalformedVariant } from './scenario.js';
import { isoSeconds } from './time-spec.js';

/**
 * Payloads the ingest must dead-letter, one rejection reason each. Built from fixed text so they are as
 * deterministic as the good readings. `badElementInBatch` is not here: the engine slips that element into a real batch.
 */
export function malformedMessage(
  variant: Exclude<MalformedVariant, 'badElementInBatch'>,
  meterId: string,
  otherMeterId: string,
  tsMs: number,
  oversizeBytes: number,
): { topic: string; payload: string } {
  const topic = `meters/${meterId}/readings`;
  const ts = isoSeconds(tsMs);
  const head = `"meterId":"${meterId}","ts":"${ts}"`;
  switch (variant) {
    case 'notJson':
      return { topic, payload: `{${head},"importWh":12` };
    case 'notObject':
      return { topic, payload: '42' };
    case 'missingField':
      return { topic, payload: `{${head},"exportWh":0}` };
    case 'wrongType':
      return { topic, payload: `{${head},"importWh":"12345"}` };
    case 'negativeRegister':
      return { topic, payload: `{${head},"importWh":-5}` };
    case 'fractionalRegister':
      return { topic, payload: `{${head},"importWh":1234.5}` };
    case 'hugeRegister':
      // 2^53 + 1: no longer exact in a double.
      return { topic, payload: `{${head},"importWh":9007199254740993}` };
    case 'badTimestamp':
      return { topic, payload: `{"meterId":"${meterId}","ts":"not-a-time","importWh":1}` };
    case 'futureTimestamp':
      // Far enough ahead to be in the future whenever the message is ingested.
      return { topic, payload: `{"meterId":"${meterId}","ts":"2999-01-01T00:00:00Z","importWh":1}` };
    case 'badMeterId':
      // On a valid topic, so the payload's id is what fails (a bad id in the topic is a topic problem).
      return { topic, payload: `{"meterId":"bad meter!","ts":"${ts}","importWh":1}` };
    case 'topicMismatch':
      return { topic, payload: `{"meterId":"${otherMeterId}","ts":"${ts}","importWh":1}` };
    case 'oversize': {
      const base = `{${head},"importWh":1,"pad":""}`;
      return { topic, payload: `{${head},"importWh":1,"pad":"${'x'.repeat(Math.max(0, oversizeBytes - base.length))}"}` };
    }
    case 'tooManyElements':
      return { topic, payload: `[${Array<string>(10_001).fill('0').join(',')}]` };
  }
}

/** The bad neighbour in a batch: a reading of the same meter whose register is not a number. */
export function badElement(meterId: string, tsMs: number): string {
  return `{"meterId":"${meterId}","ts":"${isoSeconds(tsMs)}","importWh":"n/a"}`;
}

/** The dead-letter reason the ingest gives each variant (recorded in the truth, checked against the real ingest). */
export const MALFORMED_REASON: Record<MalformedVariant, RejectReason> = {
  notJson: 'not_json',
  notObject: 'not_object',
  missingField: 'missing_field',
  wrongType: 'bad_type',
  negativeRegister: 'register_negative',
  fractionalRegister: 'register_not_integer',
  hugeRegister: 'register_too_large',
  badTimestamp: 'bad_timestamp',
  futureTimestamp: 'future_timestamp',
  badMeterId: 'bad_meter_id',
  topicMismatch: 'meter_mismatch',
  badElementInBatch: 'bad_type',
  oversize: 'payload_too_large',
  tooManyElements: 'batch_too_large',
};
