import type { Redis } from 'ioredis';
import { Compile } from 'typebox/compile';
import { AlertChangeRecord, AlertRecord, DeadLetter, TrackerRecord, type AlertState } from '../../contracts/alert.js';
import type { AnomalyType, Severity } from '../../contracts/events.js';
import { dueTimes, type AlertChange, type LifecycleConfig } from '../../domain/alert-lifecycle.js';
import type { TrackerState } from '../../domain/alert-outage.js';
import { shardOf } from '../../domain/shard.js';
import { LuaScript } from '../lua.js';

/**
 * Alert state in Redis. Every record (alert, key → current id pointer, transformer tracker) is a field of one hash
 * with a version in a second hash; writes go through one Lua script that checks the versions of everything the
 * decision read and applies all writes, index updates and outbox entries at once. Several workers may race on the
 * same alert: one wins, the others re-read and retry. All keys share the `{alerts}` hash tag (one Cluster slot).
 */

export interface AlertKeys {
  doc: string;
  ver: string;
  /** All alerts; members are ids (score 0, lexical order = creation order). */
  index: string;
  /** Alerts not resolved. */
  active: string;
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
if ARGV[1] ~= '' then redis.call('SET', KEYS[4], '1', 'EX', ARGV[1]) end
return 'ok'
`;

/**
 * One round trip for a decision's reads: per alert key its pointer, the alert it points to and its clear mark, and
 * a tracker, each with its version. Returned flat: [pointer, ver, alert, ver, mark, ver]* [tracker, ver].
 */
const READ = `
local out = {}
local n = tonumber(ARGV[1])
for i = 1, n do
  local f = ARGV[1 + i]
  local p = redis.call('HGET', KEYS[1], f)
  out[#out + 1] = p or ''
  out[#out + 1] = redis.call('HGET', KEYS[2], f) or '0'
  if p then
    local af = 'a:' .. cjson.decode(p)
    out[#out + 1] = redis.call('HGET', KEYS[1], af) or ''
    out[#out + 1] = redis.call('HGET', KEYS[2], af) or '0'
  else
    out[#out + 1] = ''
    out[#out + 1] = '0'
  end
  local cf = 'c:' .. string.sub(f, 3)
  out[#out + 1] = redis.call('HGET', KEYS[1], cf) or ''
  out[#out + 1] = redis.call('HGET', KEYS[2], cf) or '0'
end
local tf = ARGV[n + 2]
if tf ~= '' then
  out[#out + 1] = redis.call('HGET', KEYS[1], tf) or ''
  out[#out + 1] = redis.call('HGET', KEYS[2], tf) or '0'
end
return out
`;

const CAS_SCRIPT = new LuaScript(CAS);
const READ_SCRIPT = new LuaScript(READ);

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

export class StoredDataError extends Error {
  override name = 'StoredDataError';
}

const checkAlert = Compile(AlertRecord);
const checkTracker = Compile(TrackerRecord);
const checkChange = Compile(AlertChangeRecord);
const checkDead = Compile(DeadLetter);

function parseJson(raw: string, what: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (err) {
    throw new StoredDataError(`${what} is not JSON`, { cause: err });
  }
}

function parseAlert(raw: string, field: string): AlertRecord {
  const v = parseJson(raw, field);
  if (!checkAlert.Check(v)) throw new StoredDataError(`${field} does not match the alert schema: ${checkAlert.Errors(v)[0]?.message ?? ''}`);
  return v;
}

function parseTracker(raw: string, field: string): TrackerState {
  const v = parseJson(raw, field);
  if (!checkTracker.Check(v)) throw new StoredDataError(`${field} does not match the tracker schema`);
  return v;
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

export interface CommitInput {
  snapshot: Snapshot;
  alerts: readonly AlertRecord[];
  tracker: TrackerState | null;
  changes: readonly AlertChange[];
  /** Extra alert ids for the sweep to look at now (parked alerts of an outage that ended). */
  wake?: readonly string[];
  /** Clear marks to write and delete (keys must have been read). */
  cleared?: { set: ReadonlyArray<readonly [string, number]>; drop: readonly string[] };
  /** Alerts to delete (retention). */
  remove?: readonly AlertRecord[];
  eventId?: string;
  dedupSeconds?: number;
  now: number;
}

export type CommitResult = { status: 'ok'; alerts: AlertRecord[]; changes: AlertChangeRecord[] } | { status: 'dup' | 'conflict' };

export interface ListFilter {
  state?: AlertState;
  type?: AnomalyType;
  severity?: Severity;
  subject?: string;
  since?: number;
}

export class AlertStore {
  readonly keys: AlertKeys;

  constructor(
    readonly redis: Redis,
    private readonly lifecycle: LifecycleConfig,
    /** Stream shard count (STREAM_SHARDS): buckets the event-time due sets like the watermarks. */
    readonly shards: number,
    prefix = 'mf',
    /**
     * Per-meter types an outage may absorb (outage.suppressTypes): their held notices wait for the slowest shard,
     * because the other meters of the transformer, whose gasps decide whether there is an outage, are on any shard.
     */
    private readonly transformerWide: readonly string[] = [],
  ) {
    this.keys = alertKeys(prefix);
  }

  /** Due bucket of an alert: its meter's stream shard, or `all` (no meter, or judged with its transformer). */
  bucketOf(a: AlertRecord): string {
    return dueBucket(a, this.shards, this.transformerWide);
  }

  /** Every due bucket name. */
  buckets(): string[] {
    return [...Array.from({ length: this.shards }, (_, s) => String(s)), 'all'];
  }

  /** Loads doc fields and their versions in one MULTI, so content and version agree. */
  private async readFields(fields: string[]): Promise<Array<{ field: string; raw: string | null; version: string }>> {
    if (fields.length === 0) return [];
    const res = await this.redis
      .multi()
      .hmget(this.keys.doc, ...fields)
      .hmget(this.keys.ver, ...fields)
      .exec();
    const docs = res?.[0]?.[1];
    const vers = res?.[1]?.[1];
    if (res === null || !Array.isArray(docs) || !Array.isArray(vers)) throw new Error('alert store read was aborted');
    return fields.map((field, i) => {
      const raw: unknown = docs[i];
      const version: unknown = vers[i];
      return { field, raw: typeof raw === 'string' ? raw : null, version: typeof version === 'string' ? version : '0' };
    });
  }

  /** Current alerts of `keys` (and a transformer tracker), with versions for a later commit. One round trip. */
  async load(keys: readonly string[], trackerId: string | null): Promise<Snapshot> {
    const snap = new Snapshot();
    snap.trackerId = trackerId;
    const reply = await READ_SCRIPT.run(
      this.redis,
      [this.keys.doc, this.keys.ver],
      [keys.length, ...keys.map(keyField), trackerId === null ? '' : trackerField(trackerId)],
    );
    const flat = Array.isArray(reply) ? reply.map((v: unknown) => (typeof v === 'string' ? v : String(v))) : [];
    if (flat.length !== keys.length * 6 + (trackerId === null ? 0 : 2)) throw new Error('alert store read returned an unexpected reply');
    keys.forEach((key, i) => {
      const [pointer = '', pointerVer = '0', raw = '', ver = '0', mark = '', markVer = '0'] = flat.slice(i * 6, i * 6 + 6);
      snap.versions.set(keyField(key), pointerVer);
      snap.versions.set(clearedField(key), markVer);
      if (mark !== '') {
        const ts = Number(mark);
        if (!Number.isFinite(ts)) throw new StoredDataError(`${clearedField(key)} is not a time`);
        snap.cleared.set(key, ts);
      }
      if (pointer === '') return;
      const id = parseJson(pointer, keyField(key));
      if (typeof id !== 'string') throw new StoredDataError(`${keyField(key)} does not hold an alert id`);
      snap.pointers.set(key, id);
      snap.versions.set(alertField(id), ver);
      if (raw !== '') snap.byKey.set(key, parseAlert(raw, alertField(id))); // else: pointer to a deleted alert, behaves as none
    });
    if (trackerId !== null) {
      const [raw = '', ver = '0'] = flat.slice(keys.length * 6);
      snap.versions.set(trackerField(trackerId), ver);
      if (raw !== '') snap.tracker = parseTracker(raw, trackerField(trackerId));
    }
    return snap;
  }

  /** Alerts by id, with versions (and the pointers of their keys, to know which are current). */
  async loadIds(ids: readonly string[]): Promise<{ snapshot: Snapshot; alerts: AlertRecord[] }> {
    const snap = new Snapshot();
    const alerts: AlertRecord[] = [];
    for (const r of await this.readFields(ids.map(alertField))) {
      snap.versions.set(r.field, r.version);
      if (r.raw === null) continue;
      alerts.push(parseAlert(r.raw, r.field));
    }
    for (const r of await this.readFields([...new Set(alerts.map((a) => keyField(a.key)))])) {
      snap.versions.set(r.field, r.version);
      const id = r.raw === null ? null : parseJson(r.raw, r.field);
      if (typeof id === 'string') snap.pointers.set(r.field.slice(2), id);
    }
    for (const a of alerts) if (snap.pointers.get(a.key) === a.id) snap.byKey.set(a.key, a);
    return { snapshot: snap, alerts };
  }

  async loadTracker(snap: Snapshot, transformerId: string): Promise<TrackerState | null> {
    const [r] = await this.readFields([trackerField(transformerId)]);
    if (r === undefined) return null;
    snap.versions.set(r.field, r.version);
    snap.trackerId = transformerId;
    snap.tracker = r.raw === null ? null : parseTracker(r.raw, r.field);
    return snap.tracker;
  }

  async get(id: string): Promise<AlertRecord | undefined> {
    const raw = await this.redis.hget(this.keys.doc, alertField(id));
    return raw === null ? undefined : parseAlert(raw, alertField(id));
  }

  /** Current alert of a key (type:subject). */
  async getByKey(key: string): Promise<AlertRecord | undefined> {
    return (await this.load([key], null)).byKey.get(key);
  }

  /** Ids of the current alerts of `keys` (pointers only). */
  async idsOfKeys(keys: readonly string[]): Promise<string[]> {
    if (keys.length === 0) return [];
    const raw = await this.redis.hmget(this.keys.doc, ...keys.map(keyField));
    const out: string[] = [];
    for (const r of raw) {
      if (r === null) continue;
      const id = parseJson(r, 'alert pointer');
      if (typeof id === 'string') out.push(id);
    }
    return out;
  }

  /** Writes the decision if nothing it read has changed meanwhile. */
  async commit(input: CommitInput): Promise<CommitResult> {
    const snap = input.snapshot;
    const writes: DocWrite[] = [];
    const ops: SetOp[] = [];
    const k = this.keys;
    const finals = new Map<string, AlertRecord>();
    const version = (field: string): number => Number(snap.versions.get(field) ?? '0');

    for (const a of input.alerts) {
      const field = alertField(a.id);
      const isNew = !snap.versions.has(field) || snap.versions.get(field) === '0';
      if (!snap.versions.has(field)) snap.versions.set(field, '0');
      const rec: AlertRecord = { ...a, version: version(field) + 1 };
      finals.set(a.id, rec);
      writes.push({ field, mode: 'w', json: JSON.stringify(rec) });
      if (isNew) {
        // A new alert becomes its key's current one; the previous (resolved) one stays as history.
        const pField = keyField(a.key);
        if (!snap.versions.has(pField)) snap.versions.set(pField, '0');
        writes.push({ field: pField, mode: 'w', json: JSON.stringify(a.id) });
        ops.push({ set: k.index, op: 'a', member: a.id, score: 0 });
      }
      ops.push({ set: k.active, op: rec.state === 'resolved' ? 'r' : 'a', member: a.id, score: 0 });
      const due = dueTimes(rec, this.lifecycle);
      const dueEvent = k.dueEvent(this.bucketOf(rec));
      ops.push(due.event === null ? { set: dueEvent, op: 'r', member: a.id, score: 0 } : { set: dueEvent, op: 'a', member: a.id, score: due.event });
      ops.push(due.wall === null ? { set: k.dueWall, op: 'r', member: a.id, score: 0 } : { set: k.dueWall, op: 'a', member: a.id, score: due.wall });
    }
    for (const a of input.remove ?? []) {
      const field = alertField(a.id);
      writes.push({ field, mode: 'd', json: '' });
      const pField = keyField(a.key);
      if (snap.pointers.get(a.key) === a.id) writes.push({ field: pField, mode: 'd', json: '' });
      for (const set of [k.index, k.active, k.dueEvent(this.bucketOf(a)), k.dueWall]) ops.push({ set, op: 'r', member: a.id, score: 0 });
    }
    if (input.tracker !== null) {
      if (snap.trackerId === null || snap.trackerId !== input.tracker.transformerId) throw new Error('tracker written without being read');
      const field = trackerField(input.tracker.transformerId);
      writes.push({ field, mode: 'w', json: JSON.stringify(input.tracker) });
    }
    for (const [key, ts] of input.cleared?.set ?? []) writes.push({ field: clearedField(key), mode: 'w', json: String(ts) });
    for (const key of input.cleared?.drop ?? []) {
      if (snap.cleared.has(key)) writes.push({ field: clearedField(key), mode: 'd', json: '' });
    }
    for (const id of input.wake ?? []) {
      if (!finals.has(id)) ops.push({ set: k.dueWall, op: 'a', member: id, score: 0 });
    }
    // Everything else read takes part as a check.
    const written = new Set(writes.map((w) => w.field));
    for (const field of snap.versions.keys()) if (!written.has(field)) writes.push({ field, mode: 'c', json: '' });

    const changes: AlertChangeRecord[] = input.changes.map((c) => {
      const final = finals.get(c.alert.id);
      return { kind: c.kind, notify: c.notify, at: c.at, alert: { ...c.alert, version: final?.version ?? c.alert.version } };
    });

    const args: Array<string | number> = [input.eventId !== undefined ? String(Math.ceil(input.dedupSeconds ?? 172_800)) : '', writes.length];
    for (const w of writes) args.push(w.field, snap.versions.get(w.field) ?? '0', w.mode, w.json);
    const marker = input.eventId !== undefined ? k.applied(input.eventId) : k.applied('-');
    const scriptKeys = [k.doc, k.ver, k.outbox, marker];
    const keyIndex = (key: string): number => {
      const i = scriptKeys.indexOf(key);
      if (i >= 0) return i + 1;
      scriptKeys.push(key);
      return scriptKeys.length;
    };
    args.push(ops.length);
    for (const o of ops) args.push(keyIndex(o.set), o.op, o.member, o.score);
    args.push(changes.length);
    for (const c of changes) args.push(JSON.stringify(c));

    const res = await CAS_SCRIPT.run(this.redis, scriptKeys, args);
    if (res === 'dup' || res === 'conflict') return { status: res };
    if (res !== 'ok') throw new Error(`alert commit returned ${String(res)}`);
    return { status: 'ok', alerts: [...finals.values()], changes };
  }

  /** Ids whose hysteresis or held notice may be due: each bucket up to its watermark, and by wall time. */
  async dueIds(watermarkOf: (bucket: string) => number, now: number, limit: number): Promise<string[]> {
    const queries = this.buckets().map((b) => {
      const wm = watermarkOf(b);
      return Number.isFinite(wm) ? this.redis.zrangebyscore(this.keys.dueEvent(b), '-inf', wm, 'LIMIT', 0, limit) : Promise.resolve([]);
    });
    const lists = await Promise.all([...queries, this.redis.zrangebyscore(this.keys.dueWall, '-inf', now, 'LIMIT', 0, limit)]);
    return [...new Set(lists.flat())].slice(0, limit * 2);
  }

  /** Drops an id from every due set (its alert is gone). */
  async forgetDue(id: string): Promise<void> {
    const m = this.redis.multi().zrem(this.keys.dueWall, id);
    for (const b of this.buckets()) m.zrem(this.keys.dueEvent(b), id);
    await m.exec();
  }

  /** Oldest alerts first, for the retention sweep. */
  async oldestIds(limit: number): Promise<string[]> {
    return this.redis.zrange(this.keys.index, '-', '+', 'BYLEX', 'LIMIT', 0, limit);
  }

  /**
   * Newest first (by first event time), filtered; `cursor` is the last id of the previous page. Scans at most
   * `maxScan` ids per call so a rare filter cannot pin Redis; the cursor then points where the scan stopped.
   */
  async list(filter: ListFilter, limit: number, cursor: string | undefined, maxScan = 20_000): Promise<{ items: AlertRecord[]; nextCursor: string | null }> {
    const set = filter.state === 'open' || filter.state === 'acknowledged' ? this.keys.active : this.keys.index;
    const items: AlertRecord[] = [];
    let from = cursor === undefined ? '+' : `(${cursor}`;
    let scanned = 0;
    const batch = Math.min(500, Math.max(50, limit * 2));
    while (scanned < maxScan) {
      const ids = await this.redis.zrange(set, from, '-', 'BYLEX', 'REV', 'LIMIT', 0, batch);
      if (ids.length === 0) return { items, nextCursor: null };
      const raws = await this.redis.hmget(this.keys.doc, ...ids.map(alertField));
      for (let i = 0; i < ids.length; i++) {
        const raw = raws[i];
        const id = ids[i];
        scanned++;
        if (raw === null || raw === undefined || id === undefined) continue;
        const a = parseAlert(raw, alertField(id));
        if (!matchesFilter(a, filter)) continue;
        if (items.length === limit) return { items, nextCursor: items[items.length - 1]?.id ?? null };
        items.push(a);
      }
      const last = ids[ids.length - 1];
      if (ids.length < batch || last === undefined) return { items, nextCursor: null };
      from = `(${last}`;
      if (scanned >= maxScan) return { items, nextCursor: last };
    }
    return { items, nextCursor: null };
  }

  // --- outbox ----------------------------------------------------------------------------------------------

  async ensureOutboxGroup(group: string): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.keys.outbox, group, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err instanceof Error) || !err.message.includes('BUSYGROUP')) throw err;
    }
  }

  static parseChange(raw: string): AlertChangeRecord | undefined {
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      return undefined;
    }
    return checkChange.Check(v) ? v : undefined;
  }

  // --- dead letters ----------------------------------------------------------------------------------------

  async addDeadLetter(d: DeadLetter): Promise<void> {
    await this.redis.multi().hset(this.keys.dead, d.jobId, JSON.stringify(d)).zadd(this.keys.deadIndex, Date.parse(d.failedAt), d.jobId).exec();
  }

  /** Newest first; the cursor is an offset. */
  async deadLetters(limit: number, cursor: number): Promise<{ items: DeadLetter[]; nextCursor: number | null }> {
    const ids = await this.redis.zrevrange(this.keys.deadIndex, cursor, cursor + limit);
    const page = ids.slice(0, limit);
    const raws = page.length === 0 ? [] : await this.redis.hmget(this.keys.dead, ...page);
    const items: DeadLetter[] = [];
    for (const raw of raws) {
      if (raw === null) continue;
      const v = parseJson(raw, 'dead letter');
      if (checkDead.Check(v)) items.push(v);
    }
    return { items, nextCursor: ids.length > limit ? cursor + limit : null };
  }
}

export function matchesFilter(a: AlertRecord, f: ListFilter): boolean {
  return (
    (f.state === undefined || a.state === f.state) &&
    (f.type === undefined || a.type === f.type) &&
    (f.severity === undefined || a.severity === f.severity) &&
    (f.subject === undefined || a.subject === f.subject) &&
    (f.since === undefined || a.lastSeen >= f.since)
  );
}
