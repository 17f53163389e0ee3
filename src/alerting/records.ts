import { Compile } from 'typebox/compile';
import { AlertChangeRecord, AlertHistoryEntry, AlertRecord, DeadLetter, TrackerRecord } from '../contracts/alert.js';
import type { TrackerState } from '../domain/alert-outage.js';

/** Stored alert records parsed back with their schemas, and what a decision read of them. */

export class StoredDataError extends Error {
  override name = 'StoredDataError';
}

const checkAlert = Compile(AlertRecord);
const checkTracker = Compile(TrackerRecord);
const checkChange = Compile(AlertChangeRecord);
const checkDead = Compile(DeadLetter);
const checkHistory = Compile(AlertHistoryEntry);

export function parseJson(raw: string, what: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (err) {
    throw new StoredDataError(`${what} is not JSON`, { cause: err });
  }
}

export function parseAlert(raw: string, field: string): AlertRecord {
  const v = parseJson(raw, field);
  if (!checkAlert.Check(v)) throw new StoredDataError(`${field} does not match the alert schema: ${checkAlert.Errors(v)[0]?.message ?? ''}`);
  return v;
}

export function parseTracker(raw: string, field: string): TrackerState {
  const v = parseJson(raw, field);
  if (!checkTracker.Check(v)) throw new StoredDataError(`${field} does not match the tracker schema`);
  return v;
}

/** An outbox entry; undefined when it is not JSON or not a change record. */
export function parseChange(raw: string): AlertChangeRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  return checkChange.Check(v) ? v : undefined;
}

/** A stored dead letter; undefined when it does not match the schema. */
export function parseDeadLetter(raw: string): DeadLetter | undefined {
  const v = parseJson(raw, 'dead letter');
  return checkDead.Check(v) ? v : undefined;
}

/** A stored history entry; undefined when it is not JSON or does not match the schema. */
export function parseHistoryEntry(raw: string): AlertHistoryEntry | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  return checkHistory.Check(v) ? v : undefined;
}

/** What a decision read, with the versions it saw; `commit` fails with `conflict` if any of them moved. */
export class Snapshot {
  readonly versions = new Map<string, string>();
  /** key → id its pointer holds, for the keys whose pointer was read. */
  readonly pointers = new Map<string, string>();
  /** Current alert per key (only keys that have one). */
  readonly byKey = new Map<string, AlertRecord>();
  /** Clear marks per key (only keys that have one). */
  readonly cleared = new Map<string, number>();
  tracker: TrackerState | null = null;
  trackerId: string | null = null;
}
