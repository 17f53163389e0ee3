import type { AlertRecord } from '../contracts/alert.js';
import { shardOf } from '../domain/shard.js';

/**
 * Where alert state lives in Redis. Every record (alert, key → current id pointer, transformer tracker, clear mark)
 * is a field of one hash with a version in a second hash; each alert's history is a list of its own. All keys share
 * the `{alerts}` hash tag (one Cluster slot), so one script may touch any of them.
 */

export interface AlertKeys {
  doc: string;
  ver: string;
  /** All alerts; members are ids (score 0, lexical order = creation order). */
  index: string;
  /** Alerts not resolved. */
  active: string;
  /** Alerts not resolved and not covered by an outage (suppressedBy null): what an operator must act on. */
  actionable: string;
  /** Layout version of the derived sets (`actionable` is rebuilt from `active` once when it is behind). */
  layout: string;
  /** An alert's history (JSON entries, oldest first, capped). */
  history: (id: string) => string;
  /**
   * Event-time due times, one set per stream shard (bucket = shard of the alert's meter) and `all` for alerts
   * without a meter: each is read up to its own watermark, so a lagging shard never crowds out the others.
   */
  dueEvent: (bucket: string) => string;
  dueWall: string;
  outbox: string;
  dead: string;
  deadIndex: string;
  applied: (eventId: string) => string;
}

export function alertKeys(prefix = 'mf'): AlertKeys {
  const p = `${prefix}:{alerts}`;
  return {
    doc: `${p}:doc`,
    ver: `${p}:ver`,
    index: `${p}:index`,
    active: `${p}:active`,
    actionable: `${p}:actionable`,
    layout: `${p}:layout`,
    history: (id) => `${p}:history:${id}`,
    dueEvent: (bucket) => `${p}:due:event:${bucket}`,
    dueWall: `${p}:due:wall`,
    outbox: `${p}:outbox`,
    dead: `${p}:dead`,
    deadIndex: `${p}:dead:index`,
    applied: (eventId) => `${p}:applied:${eventId}`,
  };
}

/** Due bucket of an alert: its meter's stream shard, or `all` (no meter, or a type judged with its transformer). */
export function dueBucket(a: Pick<AlertRecord, 'meterId' | 'transformerId' | 'type'>, shards: number, transformerWide: readonly string[]): string {
  if (a.meterId === null || (a.transformerId !== null && transformerWide.includes(a.type))) return 'all';
  return String(shardOf(a.meterId, shards));
}

export const alertField = (id: string): string => `a:${id}`;
export const keyField = (key: string): string => `k:${key}`;
export const trackerField = (transformerId: string): string => `t:${transformerId}`;
/** Clear mark of an alert key (a clear that found no open alert; see EventInput.cleared). */
export const clearedField = (key: string): string => `c:${key}`;
