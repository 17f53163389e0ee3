import { ALERT_HISTORY_MAX, type AlertChangeRecord, type AlertHistoryEntry, type AlertRecord } from '../contracts/alert.js';
import { dueTimes, type AlertChange, type LifecycleConfig } from '../domain/alert-lifecycle.js';
import type { TrackerState } from '../domain/alert-outage.js';
import { LuaScript } from '../shared/lua.js';
import { type AlertKeys, alertField, clearedField, keyField, trackerField } from './keys.js';
import type { Snapshot } from './records.js';
import type { RedisClient } from '../shared/redis.js';

/**
 * The lifecycle writes: one Lua script checks the versions of everything the decision read and applies all writes,
 * index updates, outbox entries and history entries at once. Several workers may race on the same alert: one wins,
 * the others re-read and retry.
 */

const CAS = `
local nd = tonumber(ARGV[2])
if ARGV[1] ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then return 'dup' end
local i = 3
for d = 1, nd do
  local cur = redis.call('HGET', KEYS[2], ARGV[i]) or '0'
  if cur ~= ARGV[i + 1] then return 'conflict' end
  i = i + 4
end
i = 3
for d = 1, nd do
  local mode = ARGV[i + 2]
  if mode == 'w' then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 3])
    redis.call('HSET', KEYS[2], ARGV[i], tonumber(ARGV[i + 1]) + 1)
  elseif mode == 'd' then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
  i = i + 4
end
local nops = tonumber(ARGV[i])
i = i + 1
for o = 1, nops do
  local key = KEYS[tonumber(ARGV[i])]
  if ARGV[i + 1] == 'a' then redis.call('ZADD', key, ARGV[i + 3], ARGV[i + 2]) else redis.call('ZREM', key, ARGV[i + 2]) end
  i = i + 4
end
local nout = tonumber(ARGV[i])
i = i + 1
for o = 1, nout do
  redis.call('XADD', KEYS[3], '*', 'c', ARGV[i])
  i = i + 1
end
local nh = tonumber(ARGV[i])
local cap = tonumber(ARGV[i + 1])
i = i + 2
for h = 1, nh do
  local key = KEYS[tonumber(ARGV[i])]
  redis.call('RPUSH', key, ARGV[i + 1])
  redis.call('LTRIM', key, -cap, -1)
  i = i + 2
end
local ndel = tonumber(ARGV[i])
i = i + 1
for d = 1, ndel do
  redis.call('DEL', KEYS[tonumber(ARGV[i])])
  i = i + 1
end
if ARGV[1] ~= '' then redis.call('SET', KEYS[4], '1', 'EX', ARGV[1]) end
return 'ok'
`;

const CAS_SCRIPT = new LuaScript(CAS);

interface DocWrite {
  field: string;
  mode: 'w' | 'd' | 'c';
  json: string;
}

interface SetOp {
  /** Sorted set key (passed to the script as a KEY). */
  set: string;
  op: 'a' | 'r';
  member: string;
  score: number;
}

export interface CommitInput {
  snapshot: Snapshot;
  alerts: readonly AlertRecord[];
  tracker: TrackerState | null;
  changes: readonly AlertChange[];
  /** Extra alert ids for the sweep to look at now (parked alerts of an outage that ended). */
  wake?: readonly string[];
  /** Clear marks to write and delete (keys must have been read). */
  cleared?: { set: ReadonlyArray<readonly [string, number]>; drop: readonly string[] };
  /** Alerts to delete (retention); their history goes with them. */
  remove?: readonly AlertRecord[];
  /** Entries appended to alerts' histories (see ./history.ts), in order. */
  history?: ReadonlyArray<{ alertId: string; entry: AlertHistoryEntry }>;
  eventId?: string;
  dedupSeconds?: number;
  now: number;
}

export type CommitResult = { status: 'ok'; alerts: AlertRecord[]; changes: AlertChangeRecord[] } | { status: 'dup' | 'conflict' };

/** Where the commit puts an alert: its keys, and its due times (lifecycle) in its due bucket. */
export interface CommitPlace {
  keys: AlertKeys;
  lifecycle: LifecycleConfig;
  bucketOf: (a: AlertRecord) => string;
}

interface Plan {
  writes: DocWrite[];
  ops: SetOp[];
  /** The alerts as written, with their new versions. */
  finals: Map<string, AlertRecord>;
}

/** Writes and set updates of the alerts written (new ones become their key's current alert) and of those removed. */
function planAlerts(input: CommitInput, place: CommitPlace, plan: Plan): void {
  const snap = input.snapshot;
  const k = place.keys;
  const version = (field: string): number => Number(snap.versions.get(field) ?? '0');
  for (const a of input.alerts) {
    const field = alertField(a.id);
    const isNew = !snap.versions.has(field) || snap.versions.get(field) === '0';
    if (!snap.versions.has(field)) snap.versions.set(field, '0');
    const rec: AlertRecord = { ...a, version: version(field) + 1 };
    plan.finals.set(a.id, rec);
    plan.writes.push({ field, mode: 'w', json: JSON.stringify(rec) });
    if (isNew) {
      // A new alert becomes its key's current one; the previous (resolved) one stays as history.
      const pField = keyField(a.key);
      if (!snap.versions.has(pField)) snap.versions.set(pField, '0');
      plan.writes.push({ field: pField, mode: 'w', json: JSON.stringify(a.id) });
      plan.ops.push({ set: k.index, op: 'a', member: a.id, score: 0 });
    }
    plan.ops.push({ set: k.active, op: rec.state === 'resolved' ? 'r' : 'a', member: a.id, score: 0 });
    plan.ops.push({ set: k.actionable, op: rec.state !== 'resolved' && rec.suppressedBy === null ? 'a' : 'r', member: a.id, score: 0 });
    const due = dueTimes(rec, place.lifecycle);
    const dueEvent = k.dueEvent(place.bucketOf(rec));
    plan.ops.push(due.event === null ? { set: dueEvent, op: 'r', member: a.id, score: 0 } : { set: dueEvent, op: 'a', member: a.id, score: due.event });
    plan.ops.push(due.wall === null ? { set: k.dueWall, op: 'r', member: a.id, score: 0 } : { set: k.dueWall, op: 'a', member: a.id, score: due.wall });
  }
  for (const a of input.remove ?? []) {
    plan.writes.push({ field: alertField(a.id), mode: 'd', json: '' });
    if (snap.pointers.get(a.key) === a.id) plan.writes.push({ field: keyField(a.key), mode: 'd', json: '' });
    for (const set of [k.index, k.active, k.actionable, k.dueEvent(place.bucketOf(a)), k.dueWall]) plan.ops.push({ set, op: 'r', member: a.id, score: 0 });
  }
}

/** The tracker, clear marks and wake-ups; then everything else read takes part as a version check. */
function planRest(input: CommitInput, keys: AlertKeys, plan: Plan): void {
  const snap = input.snapshot;
  if (input.tracker !== null) {
    if (snap.trackerId === null || snap.trackerId !== input.tracker.transformerId) throw new Error('tracker written without being read');
    plan.writes.push({ field: trackerField(input.tracker.transformerId), mode: 'w', json: JSON.stringify(input.tracker) });
  }
  for (const [key, ts] of input.cleared?.set ?? []) plan.writes.push({ field: clearedField(key), mode: 'w', json: String(ts) });
  for (const key of input.cleared?.drop ?? []) {
    if (snap.cleared.has(key)) plan.writes.push({ field: clearedField(key), mode: 'd', json: '' });
  }
  for (const id of input.wake ?? []) {
    if (!plan.finals.has(id)) plan.ops.push({ set: keys.dueWall, op: 'a', member: id, score: 0 });
  }
  const written = new Set(plan.writes.map((w) => w.field));
  for (const field of snap.versions.keys()) if (!written.has(field)) plan.writes.push({ field, mode: 'c', json: '' });
}

/** The script's KEYS and ARGV: dedup, versioned doc writes, set ops (by KEYS index), outbox entries, history. */
function scriptCall(input: CommitInput, keys: AlertKeys, plan: Plan, changes: readonly AlertChangeRecord[]): { keys: string[]; args: Array<string | number> } {
  const snap = input.snapshot;
  const args: Array<string | number> = [input.eventId !== undefined ? String(Math.ceil(input.dedupSeconds ?? 172_800)) : '', plan.writes.length];
  for (const w of plan.writes) args.push(w.field, snap.versions.get(w.field) ?? '0', w.mode, w.json);
  const marker = input.eventId !== undefined ? keys.applied(input.eventId) : keys.applied('-');
  const scriptKeys = [keys.doc, keys.ver, keys.outbox, marker];
  const keyIndex = (key: string): number => {
    const i = scriptKeys.indexOf(key);
    if (i >= 0) return i + 1;
    scriptKeys.push(key);
    return scriptKeys.length;
  };
  args.push(plan.ops.length);
  for (const o of plan.ops) args.push(keyIndex(o.set), o.op, o.member, o.score);
  args.push(changes.length);
  for (const c of changes) args.push(JSON.stringify(c));
  const history = input.history ?? [];
  args.push(history.length, ALERT_HISTORY_MAX);
  for (const h of history) args.push(keyIndex(keys.history(h.alertId)), JSON.stringify(h.entry));
  const removed = input.remove ?? [];
  args.push(removed.length);
  for (const a of removed) args.push(keyIndex(keys.history(a.id)));
  return { keys: scriptKeys, args };
}

/** Writes the decision if nothing it read has changed meanwhile. */
export async function commitDecision(redis: RedisClient, place: CommitPlace, input: CommitInput): Promise<CommitResult> {
  const plan: Plan = { writes: [], ops: [], finals: new Map() };
  planAlerts(input, place, plan);
  planRest(input, place.keys, plan);
  const changes: AlertChangeRecord[] = input.changes.map((c) => {
    const final = plan.finals.get(c.alert.id);
    return { kind: c.kind, notify: c.notify, at: c.at, alert: { ...c.alert, version: final?.version ?? c.alert.version } };
  });
  const call = scriptCall(input, place.keys, plan, changes);
  const res = await CAS_SCRIPT.run(redis, call.keys, call.args);
  if (res === 'dup' || res === 'conflict') return { status: res };
  if (res !== 'ok') throw new Error(`alert commit returned ${String(res)}`);
  return { status: 'ok', alerts: [...plan.finals.values()], changes };
}
