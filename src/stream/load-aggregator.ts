import type { TransformerRecord } from '../contracts/registry.js';
import type { DetectionEvent } from '../contracts/events.js';
import { judgeSystem, judgeTransformer, type PeakSettings } from '../domain/peaks.js';
import { lp } from '../shared/line-protocol.js';
import { anomalyLine, type LoadContribution } from './shard-work.js';
import { streamKeys } from './keys.js';
import { keys, type RedisClient } from '../shared/redis.js';

/**
 * Transformer and fleet load across shards and workers. Each meter interval is one hash field
 * (`meterId@start` → net W) of its transformer's aggregation interval, so re-processing a read
 * overwrites instead of adding. An interval is judged once every shard's watermark has passed its
 * end; a late contribution re-queues it. Judging twice is harmless: same points, same event ids. An interval
 * leaves the queue only after its points are in InfluxDB and its events enqueued (`emit`), so a crash in between
 * judges it again instead of losing it.
 *
 * On a Redis Cluster the load keys spread over the slots (`{transformerId}`), so nothing here is one transaction:
 * each command keeps to one key, and the writes go in an order that a crash between any two leaves safe (contributions
 * before their due entry, judged sums before the fleet's due entry, judged states before the dequeues, deletes before
 * their GC entries go).
 */

export interface LoadDeps {
  redis: RedisClient;
  settings: PeakSettings;
  aggMs: number;
  retainMs: number;
  /** STREAM_SHARDS: the shards whose watermarks bound the fleet's. */
  shards: number;
  transformer(id: string): Promise<TransformerRecord | undefined>;
  /** Writes the lines to InfluxDB and enqueues the events; resolves once both are durable. */
  emit(lines: string[], events: DetectionEvent[]): Promise<void>;
}

const sumValues = (vals: string[]): number => vals.reduce((a, v) => a + (Number.isFinite(Number(v)) ? Number(v) : 0), 0);

/** A transformer's (or the fleet's) last judged slot and whether its overload was active then. */
interface ActiveState {
  slot: number;
  active: boolean;
}

/** A queued transformer interval: its `loadDue` member, transformer id and slot start. */
interface DueSlot {
  member: string;
  tid: string;
  slot: number;
}

/** What one judging pass emits, and what it writes once that is emitted. */
interface Judged {
  lines: string[];
  events: DetectionEvent[];
  /** `loadActive` fields: the judged states (transformer ids, `system`). */
  states: Map<string, string>;
  /** Members to drop from `loadDue` and `systemDue`. */
  dueDone: string[];
  systemDone: string[];
}

function parseActive(raw: string | null | undefined): ActiveState {
  const [slot, flag] = (raw ?? '').split('|');
  const n = Number(slot);
  return { slot: Number.isFinite(n) ? n : -Infinity, active: flag === '1' };
}

export class LoadAggregator {
  /** The fleet watermark last seen (it only moves forward): slots past their retention at it are judged and dropped. */
  private judgedTo = 0;

  constructor(private readonly d: LoadDeps) {}

  /**
   * Adds meter intervals to their transformer's slots. One whose slot is past its retention at the fleet watermark
   * is dropped: the slot was judged and its sums deleted, and a contribution now would judge it again from that one
   * meter (a reading later than `retainMs`, or a worker resumed after losing its shards, replaying old entries).
   */
  async contribute(all: readonly LoadContribution[]): Promise<void> {
    const contribs = all.filter((c) => c.slot + this.d.aggMs + this.d.retainMs > this.judgedTo);
    if (contribs.length === 0) return;
    // One HSET per transformer interval and one ZADD per batch: a backfill batch touches few of them.
    const byKey = new Map<string, string[]>();
    const due: Array<string | number> = [];
    for (const c of contribs) {
      const key = streamKeys.load(c.transformerId, c.slot);
      let fields = byKey.get(key);
      if (fields === undefined) {
        fields = [];
        byKey.set(key, fields);
        due.push(c.slot + this.d.aggMs, `${c.transformerId}|${c.slot}`);
      }
      fields.push(c.field, String(c.netW));
    }
    // One command per key (their slots differ on a cluster; the client pipelines them per node), and the due entries
    // only once they are stored: a late contribution re-queues a slot the watermark has passed, judged at once.
    await Promise.all([...byKey].map(([key, fields]) => this.d.redis.hset(key, ...fields)));
    await this.d.redis.zadd(streamKeys.loadDue, ...due);
  }

  /** Lowest watermark over the shards that have one: every shard has seen data up to it. */
  async fleetWatermark(): Promise<number | undefined> {
    const all = await this.d.redis.hgetall(keys.watermark);
    const wms = Object.values(all)
      .map(Number)
      .filter((n) => Number.isFinite(n) && n > 0);
    if (wms.length === 0) return undefined;
    // A shard with entries but no watermark yet (its worker has not checkpointed it: several workers start at
    // different times) has contributions to come: judging now would see part of the fleet.
    for (let shard = 0; shard < this.d.shards; shard++) {
      if (all[String(shard)] === undefined && (await this.d.redis.xlen(keys.readings(shard))) > 0) return undefined;
    }
    const wm = Math.min(...wms);
    this.judgedTo = Math.max(this.judgedTo, wm);
    return wm;
  }

  /** Judges every transformer and fleet interval the watermark has closed, emits the points and events, then dequeues them. */
  async judgeDue(maxItems = 5000, mine: () => Promise<boolean> = async () => true): Promise<void> {
    const wm = await this.fleetWatermark();
    if (wm === undefined) return;
    const out: Judged = { lines: [], events: [], states: new Map(), dueDone: [], systemDone: [] };
    const due = await this.dueSlots(wm, maxItems);
    if (due.length > 0 && !(await this.judgeTransformers(due, out, mine))) return;

    // The fleet sum of a slot needs every transformer of it: wait while transformer slots are still queued.
    const sysDue = due.length >= maxItems ? [] : await this.d.redis.zrangebyscore(streamKeys.systemDue, '-inf', wm, 'LIMIT', 0, maxItems);
    await this.judgeFleet(sysDue, out);
    // Transformer and system events are anomalies too (Grafana annotates them); the subject goes in the `meter` tag.
    for (const e of out.events) out.lines.push(anomalyLine(e));
    // Judged from what was read: if another worker's pass took over meanwhile, those reads may be stale.
    if (!(await mine())) return;
    await this.d.emit(out.lines, out.events);
    // Once emitted: the judged states, then the dequeues. A crash in between judges those slots again against the
    // states they produced, which repeats their points and drops no event (each was enqueued above).
    if (out.states.size > 0) await this.d.redis.hset(streamKeys.loadActive, Object.fromEntries(out.states));
    await Promise.all([
      out.dueDone.length > 0 ? this.d.redis.zrem(streamKeys.loadDue, ...out.dueDone) : undefined,
      out.systemDone.length > 0 ? this.d.redis.zrem(streamKeys.systemDue, ...out.systemDone) : undefined,
    ]);
    // Last: a slot's sums go only once it has left the queues (deleted before, a slot queued again would be judged
    // from nothing).
    await this.collectGarbage(wm, maxItems);
  }

  /** The transformer intervals the watermark has closed, at most `maxItems`. */
  private async dueSlots(wm: number, maxItems: number): Promise<DueSlot[]> {
    // Ordered by slot end, so one transformer's slots are judged in time order within a pass.
    return (await this.d.redis.zrangebyscore(streamKeys.loadDue, '-inf', wm, 'LIMIT', 0, maxItems)).flatMap((member) => {
      const cut = member.lastIndexOf('|');
      const slot = Number(member.slice(cut + 1));
      return cut > 0 && Number.isFinite(slot) ? [{ member, tid: member.slice(0, cut), slot }] : [];
    });
  }

  /** Each due slot's contributions (one reply per slot), its transformer's record and judged state. */
  private async readDue(due: DueSlot[]) {
    const tids = [...new Set(due.map((d) => d.tid))];
    const r = this.d.redis;
    // One command per key (their slots differ on a cluster), pipelined by the client.
    const [values, active, recs] = await Promise.all([
      Promise.all(due.map((d) => r.hvals(streamKeys.load(d.tid, d.slot)))),
      r.hmget(streamKeys.loadActive, ...tids),
      Promise.all(tids.map((t) => this.d.transformer(t))),
    ]);
    const rec = new Map(tids.map((t, i) => [t, recs[i]]));
    const state = new Map(tids.map((t, i) => [t, parseActive(active[i])]));
    return { values, rec, state };
  }

  /** Judges the due transformer slots and adds them to their fleet slots; `out` gets their dequeues and the new states. */
  private async judgeTransformers(due: DueSlot[], out: Judged, mine: () => Promise<boolean>): Promise<boolean> {
    const { values, rec, state } = await this.readDue(due);
    if (!(await mine())) return false;
    const r = this.d.redis;
    const sums: Array<Promise<unknown>> = [];
    const systemDue: Array<string | number> = [];
    due.forEach((d, i) => {
      const netW = sumValues(values[i] ?? []);
      this.judgeTransformerSlot(d, netW, rec.get(d.tid), state, out);
      sums.push(r.hset(streamKeys.systemLoad(d.slot), d.tid, String(netW)));
      systemDue.push(d.slot + this.d.aggMs, String(d.slot));
      out.dueDone.push(d.member);
    });
    sums.push(r.zadd(streamKeys.loadGc, ...due.flatMap((d) => [d.slot + this.d.aggMs + this.d.retainMs, streamKeys.load(d.tid, d.slot)])));
    // The fleet slots become due only once their transformer sums are stored.
    await Promise.all(sums);
    await r.zadd(streamKeys.systemDue, ...systemDue);
    for (const [tid, st] of state) if (Number.isFinite(st.slot)) out.states.set(tid, `${st.slot}|${st.active ? 1 : 0}`);
    return true;
  }

  /** One transformer slot's point and event; moves its transformer's state on (in `state`) when in order. */
  private judgeTransformerSlot(d: DueSlot, netW: number, t: TransformerRecord | undefined, state: Map<string, ActiveState>, out: Judged): void {
    const prev = state.get(d.tid) ?? { slot: -Infinity, active: false };
    const feederId = t?.feederId ?? '';
    if (t === undefined) {
      out.lines.push(lp('feeder_load', { feeder: feederId, transformer: d.tid }, { demand_kw: netW / 1000 }, d.slot));
      return;
    }
    const j = judgeTransformer(
      { transformerId: d.tid, feederId, start: d.slot, aggMs: this.d.aggMs, netW, ratingKva: t.ratingKva },
      prev.active,
      this.d.settings,
    );
    out.lines.push(
      lp('feeder_load', { feeder: feederId, transformer: d.tid }, { demand_kw: j.demandKw, rating_kw: j.ratingKw, utilization: j.utilization }, d.slot),
    );
    // A slot judged again after a later one (late data) may still fire, but never clears or moves the state back.
    const inOrder = d.slot >= prev.slot;
    if (j.event !== undefined && (j.event.status === 'firing' || inOrder)) out.events.push(j.event);
    if (inOrder) state.set(d.tid, { slot: d.slot, active: j.active });
  }

  /** Judges the due fleet slots (`sysDue`) in order; `out` gets their dequeues and the fleet's new state. */
  private async judgeFleet(sysDue: string[], out: Judged): Promise<void> {
    const r = this.d.redis;
    let sys = parseActive(await r.hget(streamKeys.loadActive, 'system'));
    for (const member of sysDue) {
      const slot = Number(member);
      if (!Number.isFinite(slot)) continue;
      const key = streamKeys.systemLoad(slot);
      const netW = sumValues(await r.hvals(key));
      const j = judgeSystem({ start: slot, aggMs: this.d.aggMs, netW }, sys.active, this.d.settings);
      out.lines.push(lp('system_load', {}, { demand_kw: j.demandKw, threshold_kw: this.d.settings.systemPeak.thresholdKw }, slot));
      const inOrder = slot >= sys.slot;
      if (j.event !== undefined && (j.event.status === 'firing' || inOrder)) out.events.push(j.event);
      if (inOrder) sys = { slot, active: j.active };
      await r.zadd(streamKeys.loadGc, slot + this.d.aggMs + this.d.retainMs, key);
      out.systemDone.push(member);
    }
    if (sysDue.length > 0 && Number.isFinite(sys.slot)) out.states.set('system', `${sys.slot}|${sys.active ? 1 : 0}`);
  }

  /**
   * Deletes the load hashes whose retention (`retainMs` past their interval) the watermark has passed: one DEL per key
   * (their slots differ on a cluster), then their GC entries, so a crash in between only deletes them again.
   */
  private async collectGarbage(wm: number, maxItems: number): Promise<void> {
    const r = this.d.redis;
    const old = await r.zrangebyscore(streamKeys.loadGc, '-inf', wm, 'LIMIT', 0, maxItems);
    if (old.length === 0) return;
    await Promise.all(old.map((k) => r.del(k)));
    await r.zrem(streamKeys.loadGc, ...old);
  }
}
