import type { ChainableCommander, Redis } from 'ioredis';
import type { TransformerRecord } from '../contracts/registry.js';
import type { DetectionEvent } from '../contracts/events.js';
import { judgeSystem, judgeTransformer, type PeakSettings } from '../domain/peaks.js';
import { lp } from '../shared/line-protocol.js';
import { anomalyLine, type LoadContribution } from './shard-work.js';
import { streamKeys } from './keys.js';
import { keys } from '../shared/redis.js';

/**
 * Transformer and fleet load across shards and workers. Each meter interval is one hash field
 * (`meterId@start` → net W) of its transformer's aggregation interval, so re-processing a read
 * overwrites instead of adding. An interval is judged once every shard's watermark has passed its
 * end; a late contribution re-queues it. Judging twice is harmless: same points, same event ids. An interval
 * leaves the queue only after its points are in InfluxDB and its events enqueued (`emit`), so a crash in between
 * judges it again instead of losing it.
 */

export interface LoadDeps {
  redis: Redis;
  settings: PeakSettings;
  aggMs: number;
  retainMs: number;
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

/** What one judging pass emits. */
interface Judged {
  lines: string[];
  events: DetectionEvent[];
}

function parseActive(raw: string | null | undefined): ActiveState {
  const [slot, flag] = (raw ?? '').split('|');
  const n = Number(slot);
  return { slot: Number.isFinite(n) ? n : -Infinity, active: flag === '1' };
}

export class LoadAggregator {
  constructor(private readonly d: LoadDeps) {}

  async contribute(contribs: readonly LoadContribution[]): Promise<void> {
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
    const p = this.d.redis.pipeline();
    for (const [key, fields] of byKey) p.hset(key, ...fields);
    p.zadd(streamKeys.loadDue, ...due);
    await p.exec();
  }

  /** Lowest watermark over the shards that have one: every shard has seen data up to it. */
  async fleetWatermark(): Promise<number | undefined> {
    const all = await this.d.redis.hvals(keys.watermark);
    const wms = all.map(Number).filter((n) => Number.isFinite(n) && n > 0);
    return wms.length === 0 ? undefined : Math.min(...wms);
  }

  /** Judges every transformer and fleet interval the watermark has closed, emits the points and events, then dequeues them. */
  async judgeDue(maxItems = 5000): Promise<void> {
    const wm = await this.fleetWatermark();
    if (wm === undefined) return;
    // Applied once the outputs are emitted: the dequeues and the judged state.
    const after = this.d.redis.multi();
    const out: Judged = { lines: [], events: [] };
    const due = await this.dueSlots(wm, maxItems);
    if (due.length > 0) await this.judgeTransformers(due, out, after);

    // The fleet sum of a slot needs every transformer of it: wait while transformer slots are still queued.
    const sysDue = due.length >= maxItems ? [] : await this.d.redis.zrangebyscore(streamKeys.systemDue, '-inf', wm, 'LIMIT', 0, maxItems);
    await this.judgeFleet(sysDue, out, after);
    await this.collectGarbage(wm, maxItems);
    // Transformer and system events are anomalies too (Grafana annotates them); the subject goes in the `meter` tag.
    for (const e of out.events) out.lines.push(anomalyLine(e));
    await this.d.emit(out.lines, out.events);
    await after.exec();
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
    const read = this.d.redis.pipeline();
    for (const d of due) read.hvals(streamKeys.load(d.tid, d.slot));
    read.hmget(streamKeys.loadActive, ...tids);
    const [replies, recs] = await Promise.all([read.exec(), Promise.all(tids.map((t) => this.d.transformer(t)))]);
    const rec = new Map(tids.map((t, i) => [t, recs[i]]));
    const activeReply = replies?.[due.length]?.[1];
    const state = new Map(tids.map((t, i) => [t, parseActive(Array.isArray(activeReply) ? stringOrNull(activeReply[i]) : null)]));
    return { replies, rec, state };
  }

  /** Judges the due transformer slots and adds them to their fleet slots; `after` gets their dequeues and the new states. */
  private async judgeTransformers(due: DueSlot[], out: Judged, after: ChainableCommander): Promise<void> {
    const { replies, rec, state } = await this.readDue(due);
    const write = this.d.redis.multi();
    due.forEach((d, i) => {
      const vals = replies?.[i]?.[1];
      const netW = sumValues(Array.isArray(vals) ? vals.filter((v): v is string => typeof v === 'string') : []);
      this.judgeTransformerSlot(d, netW, rec.get(d.tid), state, out);
      write
        .hset(streamKeys.systemLoad(d.slot), d.tid, String(netW))
        .zadd(streamKeys.systemDue, d.slot + this.d.aggMs, String(d.slot))
        .zadd(streamKeys.loadGc, d.slot + this.d.aggMs + this.d.retainMs, streamKeys.load(d.tid, d.slot));
      after.zrem(streamKeys.loadDue, d.member);
    });
    for (const [tid, st] of state) if (Number.isFinite(st.slot)) after.hset(streamKeys.loadActive, tid, `${st.slot}|${st.active ? 1 : 0}`);
    await write.exec();
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

  /** Judges the due fleet slots (`sysDue`) in order; `after` gets their dequeues and the fleet's new state. */
  private async judgeFleet(sysDue: string[], out: Judged, after: ChainableCommander): Promise<void> {
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
      after.zrem(streamKeys.systemDue, member);
    }
    if (sysDue.length > 0 && Number.isFinite(sys.slot)) after.hset(streamKeys.loadActive, 'system', `${sys.slot}|${sys.active ? 1 : 0}`);
  }

  /** Deletes the load hashes whose retention (`retainMs` past their interval) the watermark has passed. */
  private async collectGarbage(wm: number, maxItems: number): Promise<void> {
    const old = await this.d.redis.zrangebyscore(streamKeys.loadGc, '-inf', wm, 'LIMIT', 0, maxItems);
    if (old.length > 0)
      await this.d.redis
        .multi()
        .del(...old)
        .zrem(streamKeys.loadGc, ...old)
        .exec();
  }
}

const stringOrNull = (v: unknown): string | null => (typeof v === 'string' ? v : null);
