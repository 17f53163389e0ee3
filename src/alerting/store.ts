import type { AlertChangeRecord, AlertHistoryEntry, AlertRecord, AlertState, DeadLetter, SuppressedFilter } from '../contracts/alert.js';
import type { AnomalyType, Severity } from '../contracts/events.js';
import type { CustomerClass } from '../contracts/registry.js';
import type { LifecycleConfig } from '../domain/alert-lifecycle.js';
import type { TrackerState } from '../domain/alert-outage.js';
import { LuaScript } from '../shared/lua.js';
import { type CommitInput, type CommitResult, commitDecision } from './commit.js';
import { type AlertKeys, alertField, alertKeys, clearedField, dueBucket, keyField, trackerField } from './keys.js';
import { parseAlert, parseChange, parseDeadLetter, parseHistoryEntry, parseJson, parseTracker, Snapshot, StoredDataError } from './records.js';
import type { RedisClient } from '../shared/redis.js';

/**
 * Alert state in Redis (keys: ./keys.ts): the reads a decision makes with their versions, the queries of the API
 * and the sweep, the outbox and the dead letters. Writes go through `commit` (./commit.ts): one version-checked Lua
 * script.
 */

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

const READ_SCRIPT = new LuaScript(READ);

/**
 * Brings the derived `actionable` set up to the layout ARGV[1] (KEYS: doc, active, actionable, layout): rebuilt
 * from `active` and the records, atomically with the commits, once per store (alerts written before it existed).
 */
const LAYOUT = `
if redis.call('GET', KEYS[4]) == ARGV[1] then return 0 end
redis.call('DEL', KEYS[3])
local n = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local raw = redis.call('HGET', KEYS[1], 'a:' .. id)
  if raw then
    local ok, a = pcall(cjson.decode, raw)
    if ok and type(a) == 'table' and a.state ~= 'resolved' and (a.suppressedBy == nil or a.suppressedBy == cjson.null) then
      redis.call('ZADD', KEYS[3], 0, id)
      n = n + 1
    end
  end
end
redis.call('SET', KEYS[4], ARGV[1])
return n
`;

const LAYOUT_SCRIPT = new LuaScript(LAYOUT);
const LAYOUT_VERSION = '2';

export interface ListFilter {
  /** One state or any of several. */
  state?: AlertState | readonly AlertState[];
  type?: AnomalyType;
  severity?: Severity;
  subject?: string;
  since?: number;
  feederId?: string;
  transformerId?: string;
  customerClass?: CustomerClass;
  /** Alerts an outage covers (suppressedBy set): undefined or `include` lists them too. */
  suppressed?: SuppressedFilter;
}

export interface ActiveCounts {
  /** Not resolved, not covered by an outage. */
  actionable: number;
  /** Not resolved, covered by an outage (suppressedBy set). */
  suppressed: number;
}

export class AlertStore {
  readonly keys: AlertKeys;
  private layoutReady: Promise<void> | undefined;

  constructor(
    readonly redis: RedisClient,
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
  commit(input: CommitInput): Promise<CommitResult> {
    return commitDecision(this.redis, { keys: this.keys, lifecycle: this.lifecycle, bucketOf: (a) => this.bucketOf(a) }, input);
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

  /** Builds the derived sets once (see LAYOUT); later calls in this process cost nothing. A failure is retried next call. */
  ensureLayout(): Promise<void> {
    this.layoutReady ??= LAYOUT_SCRIPT.run(this.redis, [this.keys.doc, this.keys.active, this.keys.actionable, this.keys.layout], [LAYOUT_VERSION]).then(
      () => undefined,
      (err: unknown) => {
        this.layoutReady = undefined;
        throw err;
      },
    );
    return this.layoutReady;
  }

  /** Alerts not resolved, split by whether an outage covers them (one MULTI, so the two agree). */
  async activeCounts(): Promise<ActiveCounts> {
    await this.ensureLayout();
    const res = await this.redis.multi().zcard(this.keys.active).zcard(this.keys.actionable).exec();
    const active = res?.[0]?.[1];
    const actionable = res?.[1]?.[1];
    if (typeof active !== 'number' || typeof actionable !== 'number') throw new Error('alert count read was aborted');
    return { actionable, suppressed: Math.max(0, active - actionable) };
  }

  /** An alert's history, oldest first (entries that do not parse are skipped). */
  async history(id: string): Promise<AlertHistoryEntry[]> {
    const raws = await this.redis.lrange(this.keys.history(id), 0, -1);
    return raws.map(parseHistoryEntry).filter((e): e is AlertHistoryEntry => e !== undefined);
  }

  /** The smallest index that holds every alert the filter can match. */
  private async listSet(filter: ListFilter): Promise<string> {
    const states = filter.state === undefined ? undefined : typeof filter.state === 'string' ? [filter.state] : filter.state;
    if (states === undefined || states.length === 0 || states.includes('resolved')) return this.keys.index;
    if (filter.suppressed !== 'exclude') return this.keys.active;
    await this.ensureLayout();
    return this.keys.actionable;
  }

  /**
   * Newest first (by first event time), filtered; `cursor` is the last id of the previous page. The filter applies
   * inside the scan, so a page holds `limit` matches whenever that many exist. Scans at most `maxScan` ids per call
   * so a rare filter cannot pin Redis; the cursor then points where the scan stopped.
   */
  async list(filter: ListFilter, limit: number, cursor: string | undefined, maxScan = 20_000): Promise<{ items: AlertRecord[]; nextCursor: string | null }> {
    const set = await this.listSet(filter);
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
    return parseChange(raw);
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
      const d = parseDeadLetter(raw);
      if (d !== undefined) items.push(d);
    }
    return { items, nextCursor: ids.length > limit ? cursor + limit : null };
  }
}

function matchesSuppressed(a: AlertRecord, f: SuppressedFilter | undefined): boolean {
  if (f === undefined || f === 'include') return true;
  return (a.suppressedBy !== null) === (f === 'only');
}

export function matchesFilter(a: AlertRecord, f: ListFilter): boolean {
  return (
    (f.state === undefined || (typeof f.state === 'string' ? a.state === f.state : f.state.includes(a.state))) &&
    (f.feederId === undefined || a.feederId === f.feederId) &&
    (f.transformerId === undefined || a.transformerId === f.transformerId) &&
    (f.customerClass === undefined || a.customerClass === f.customerClass) &&
    matchesSuppressed(a, f.suppressed) &&
    (f.type === undefined || a.type === f.type) &&
    (f.severity === undefined || a.severity === f.severity) &&
    (f.subject === undefined || a.subject === f.subject) &&
    (f.since === undefined || a.lastSeen >= f.since)
  );
}
