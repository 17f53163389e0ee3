import type { Logger } from 'pino';
import type { DetectionEvent } from '../contracts/events.js';
import type { MeterState } from '../domain/meter-state.js';
import { decodeMeterState, encodeMeterState } from '../domain/meter-state-codec.js';
import type { StreamSettings } from '../domain/stream-settings.js';
import { readingLine } from '../shared/line-protocol.js';
import { keys, type RedisClient } from '../shared/redis.js';
import { parseEntry, parseReadReply } from './entries.js';
import { STREAM_GROUP, streamKeys } from './keys.js';
import { FENCED_CHECKPOINT, FENCED_READ, isFenced, type ShardLeases } from './leases.js';
import { addCounts, type BatchCounts, type BatchOutput, emptyCounts, type MeterRecord, type Recompute, ShardWork, type WorkSettings } from './shard-work.js';

/**
 * The consume loop over the shards whose lease this worker holds (src/stream/leases.ts): a fenced XREADGROUP per
 * shard (one script each, so a Cluster routes it to the shard's node), one batch per shard at a time, and every
 * `checkpointMs` a fenced checkpoint that stores the changed meters' states, the watermark, XACK and XDEL in one
 * script per shard.
 * Outputs are written before the checkpoint that covers them and are idempotent (InfluxDB overwrites, BullMQ
 * jobIds dedupe), so a crash anywhere replays the un-acknowledged entries from the last checkpoint and yields the
 * same results. Between checkpoints the entries stay pending in the group; a meter read several times in one
 * period is encoded and stored once.
 */

export interface WorkerDeps {
  /** Commands and checkpoints. */
  redis: RedisClient;
  /** Which shards this worker works on, and the fencing of their reads and checkpoints. */
  leases: ShardLeases;
  consumer: string;
  work: WorkSettings;
  batchEntries: number;
  batchReadings: number;
  /** Wait between reads while every owned stream is empty. */
  idleMs: number;
  /** How often leases are balanced (taken, handed back); renewals run on their own timer. */
  rebalanceMs: number;
  dlqMaxLen: number;
  meters(ids: string[]): Promise<Map<string, MeterRecord>>;
  defaults(meterId: string): MeterRecord;
  writeLines(lines: string[]): void;
  /** Resolves once the writer's buffer is below its high-water mark. */
  drainLines(): Promise<void>;
  /** Resolves once every line written so far is in InfluxDB. */
  flushLines(): Promise<void>;
  /** At most this long between checkpoints while entries are processed (and at once when the streams go quiet). */
  checkpointMs: number;
  enqueueEvents(events: DetectionEvent[]): Promise<void>;
  enqueueRecomputes(r: Recompute[]): Promise<void>;
  contributeLoad(out: BatchOutput): Promise<void>;
  /** Called between batches (load judging); errors are logged, not fatal. */
  idle(): Promise<void>;
  onBatch(shard: number, out: BatchOutput, ms: number): void;
  log: Logger;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const DLQ_PAYLOAD_BYTES = 4096;

export class StreamWorker {
  private readonly work = new Map<number, ShardWork>();
  /**
   * While a shard's own pending entries are replayed: the id after which to read them ('0' at first; they stay
   * pending until the next checkpoint, so each read goes on from the last one). Then '>' for new entries.
   */
  private readonly cursor = new Map<number, string>();
  private stopping = false;
  private loop: Promise<void> | undefined;
  private lastRebalance = 0;
  /** Shards whose checkpoint was fenced: dropped at the next step. */
  private readonly fenced = new Set<number>();
  /** Readings per entry seen so far (moving average), 0 before the first: sizes the next read. */
  private perEntry = 0;
  /** Per shard, what the next checkpoint acknowledges and stores. */
  private held = new Map<number, { ackIds: string[]; dirty: Set<string> }>();
  private recomputes: Recompute[] = [];
  private lastCheckpoint = performance.now();
  /** The checkpoint being stored, if any. */
  private committing: Promise<void> | undefined;
  readonly totals: BatchCounts = emptyCounts();
  /** Ingest time of the newest entry processed: now − lastRx is how far behind the worker runs. */
  lastRx = 0;
  eventsEnqueued = 0;

  constructor(private readonly d: WorkerDeps) {}

  get settings(): StreamSettings {
    return this.d.work.settings;
  }

  watermarks(): Map<number, number> {
    return new Map([...this.work].map(([s, w]) => [s, w.watermark]));
  }

  /** The shards this worker works on now. */
  ownedShards(): number[] {
    return [...this.work.keys()].sort((a, b) => a - b);
  }

  async start(): Promise<void> {
    this.d.leases.start();
    await this.rebalance();
    this.loop = this.run();
  }

  /**
   * Applies a balancing round: drops the shards whose lease was lost (their uncheckpointed work is the new owner's
   * to replay), checkpoints and hands back the surplus, and takes over the shards acquired.
   */
  private async rebalance(): Promise<void> {
    this.lastRebalance = Date.now();
    const changes = await this.d.leases.rebalance();
    for (const shard of changes.lost) this.drop(shard);
    if (changes.surplus.length > 0) {
      await this.checkpoint();
      for (const shard of changes.surplus) {
        this.drop(shard);
        await this.d.leases.release(shard);
      }
    }
    for (const shard of changes.acquired) await this.takeOver(shard);
  }

  /**
   * A shard just leased: every entry pending in the group (a dead or fenced owner's, read but never checkpointed)
   * becomes this worker's, the meter states come from the last checkpoint, and the pending entries are replayed
   * first. Consumers left with nothing pending on this stream are removed (old owners, restarts).
   */
  private async takeOver(shard: number): Promise<void> {
    await this.ensureGroup(shard);
    const stream = keys.readings(shard);
    let cursor = '0-0';
    do {
      const reply = (await this.d.redis.call('XAUTOCLAIM', stream, STREAM_GROUP, this.d.consumer, 0, cursor, 'COUNT', 10_000, 'JUSTID')) as unknown[];
      cursor = String(reply[0] ?? '0-0');
    } while (cursor !== '0-0');
    const consumers = (await this.d.redis.call('XINFO', 'CONSUMERS', stream, STREAM_GROUP)) as unknown[][];
    for (const c of consumers) {
      const name = String(c[c.indexOf('name') + 1]);
      if (name !== this.d.consumer && Number(c[c.indexOf('pending') + 1]) === 0) await this.d.redis.call('XGROUP', 'DELCONSUMER', stream, STREAM_GROUP, name);
    }
    this.work.set(shard, new ShardWork(shard, this.d.work));
    await this.loadShard(shard);
  }

  /** Stops working on a shard at once; what it held for the next checkpoint is discarded (replayed by its owner). */
  private drop(shard: number): void {
    this.work.delete(shard);
    this.cursor.delete(shard);
    this.held.delete(shard);
    this.fenced.delete(shard);
  }

  /** The consumer group reads from the stream's start, so history appended before the first start is processed. */
  private async ensureGroup(shard: number): Promise<void> {
    try {
      await this.d.redis.xgroup('CREATE', keys.readings(shard), STREAM_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err instanceof Error && err.message.includes('BUSYGROUP'))) throw err;
    }
  }

  /** Stops reading, lets the batch in flight finish and checkpoint, then hands every lease back. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
    await this.d.leases.close();
  }

  private async loadShard(shard: number): Promise<void> {
    const raw = await this.d.redis.hgetall(streamKeys.state(shard));
    const states = new Map<string, MeterState>();
    let bad = 0;
    for (const [id, v] of Object.entries(raw)) {
      const st = decodeMeterState(v, this.settings);
      if (st === undefined) bad++;
      else states.set(id, st);
    }
    if (bad > 0) this.d.log.warn({ shard, bad }, 'unreadable meter states dropped; those meters start afresh');
    const wm = Number(await this.d.redis.hget(streamKeys.meta(shard), 'wm'));
    this.work.get(shard)?.load(states, Number.isFinite(wm) ? wm : 0);
    this.cursor.set(shard, '0');
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.step();
        if (this.stopping) await this.checkpoint();
      } catch (err) {
        // Reload from the last checkpoint and replay what it did not cover: nothing is lost or counted twice.
        this.d.log.error({ err }, 'stream batch failed; reloading shards from the checkpoint');
        this.held.clear();
        this.recomputes = [];
        // A checkpoint still being stored must land (or fail) before the reload reads the checkpoint back.
        await this.committing?.catch(() => undefined);
        this.committing = undefined;
        await sleep(1000);
        for (const shard of this.work.keys()) {
          try {
            await this.ensureGroup(shard); // a Redis restored without the group (NOGROUP)
            await this.loadShard(shard);
          } catch (e) {
            this.d.log.error({ err: e, shard }, 'reload failed');
          }
        }
      }
    }
  }

  private async step(): Promise<void> {
    for (const shard of this.fenced) this.drop(shard);
    if (Date.now() - this.lastRebalance >= this.d.rebalanceMs) await this.rebalance();
    const shards = this.ownedShards();
    const pending = shards.filter((s) => this.cursor.get(s) !== '>');
    const targets = pending.length > 0 ? pending : shards;
    // The first read takes one entry per shard: entry sizes are unknown until then.
    const count = this.perEntry === 0 ? 1 : Math.max(1, Math.min(this.d.batchEntries, Math.floor(this.d.batchReadings / (this.perEntry * targets.length))));
    const lists: Array<[number, Array<{ id: string; fields: string[] | null }>]> = [];
    const replies = await Promise.all(targets.map((shard) => this.read(shard, count)));
    targets.forEach((shard, i) => {
      const list = replies[i];
      if (list === undefined) return; // fenced: dropped
      if (pending.length > 0) this.cursor.set(shard, list.at(-1)?.id ?? '>');
      if (list.length > 0) lists.push([shard, list]);
    });
    if (lists.length > 0) await this.batches(lists);
    else {
      await this.checkpoint(); // quiet streams: acknowledge at once
      if (pending.length === 0) await sleep(this.d.idleMs);
    }
    try {
      await this.d.idle();
    } catch (err) {
      this.d.log.warn({ err }, 'load judging failed; retried next round');
    }
  }

  /**
   * One shard's next entries (its own pending ones from the cursor, or new ones), read only while this worker holds
   * the shard's lease; undefined when it does not any more (the shard is dropped).
   */
  private async read(shard: number, count: number): Promise<Array<{ id: string; fields: string[] | null }> | undefined> {
    const value = this.d.leases.value(shard);
    if (value === undefined) {
      this.drop(shard);
      return undefined;
    }
    try {
      const stream = keys.readings(shard);
      const reply = await FENCED_READ.run(
        this.d.redis,
        [streamKeys.lease(shard), stream],
        [value, STREAM_GROUP, this.d.consumer, count, this.cursor.get(shard) ?? '>'],
      );
      return parseReadReply(reply).get(stream) ?? [];
    } catch (err) {
      if (!isFenced(err)) throw err;
      this.d.leases.lose(shard);
      this.drop(shard);
      return undefined;
    }
  }

  /**
   * Processes the shards' batches of one read and hands their outputs on: InfluxDB lines to the writer (buffered,
   * flushed in the background while the next batch is processed), events, dead letters and load contributions at
   * once. What a checkpoint needs (the entries to acknowledge, the meters to store, the billing recomputes) is
   * kept until the next checkpoint, which runs every `checkpointMs`.
   */
  private async batches(lists: Array<[number, Array<{ id: string; fields: string[] | null }>]>): Promise<void> {
    const t0 = performance.now();
    const done: Array<{ shard: number; out: BatchOutput }> = [];
    for (const [shard, list] of lists) {
      const work = this.work.get(shard);
      if (work === undefined) continue;
      const entries = list.flatMap((e) => (e.fields === null ? [] : [parseEntry(e.id, e.fields)]));
      if (entries.length > 0) {
        const n = entries.reduce((a, e) => a + e.readings.length + e.events.length, 0) / entries.length;
        this.perEntry = this.perEntry === 0 ? Math.max(1, n) : Math.max(1, 0.7 * this.perEntry + 0.3 * n);
      }
      for (const e of entries) this.lastRx = Math.max(this.lastRx, e.rx);
      const meters = await this.d.meters(work.metersNeeded(entries));
      const meterOf = (id: string): MeterRecord => meters.get(id) ?? this.d.defaults(id);
      // The raw reads, every one the ingest acknowledged (late and conflicting ones too: they are the legal record),
      // written from the durable stream before the checkpoint acknowledges it: complete after any single fault.
      const raw: string[] = [];
      for (const e of entries) for (const r of e.readings) raw.push(readingLine(r, meterOf(r.meterId).feederId));
      this.d.writeLines(raw);
      const out = work.process(entries, meterOf);
      for (const e of list) if (e.fields === null) out.ackIds.push(e.id);
      this.d.writeLines(out.lines);
      done.push({ shard, out });
    }
    // A worker stopped mid-batch past its lease (SIGSTOP, a long GC pause) must not hand on what it computed from a
    // stale state: its dead letters would be counted twice and its load contributions would judge old slots again.
    // Its InfluxDB lines above are the same as the new owner's (same entries, same checkpoint), so they may stay.
    const current = await Promise.all(done.map(({ shard }) => this.d.redis.get(streamKeys.lease(shard))));
    done.splice(
      0,
      done.length,
      ...done.filter(({ shard }, i) => {
        if (current[i] !== null && current[i] === this.d.leases.value(shard)) return true;
        this.d.leases.lose(shard);
        this.drop(shard);
        return false;
      }),
    );
    for (const { shard, out } of done) {
      const held = this.held.get(shard) ?? { ackIds: [], dirty: new Set<string>() };
      this.held.set(shard, held);
      for (const id of out.ackIds) held.ackIds.push(id);
      for (const id of out.dirty) held.dirty.add(id);
      for (const r of out.recomputes) this.recomputes.push(r);
    }
    await Promise.all(
      done.map(async ({ out }) => {
        await this.deadLetter(out);
        await this.d.enqueueEvents(out.events);
        await this.d.contributeLoad(out);
      }),
    );
    // Backpressure: the writer holds at most its high-water mark of lines.
    await this.d.drainLines();
    if (performance.now() - this.lastCheckpoint >= this.d.checkpointMs) await this.beginCheckpoint();
    const ms = performance.now() - t0;
    for (const { shard, out } of done) {
      addCounts(this.totals, out.counts);
      this.eventsEnqueued += out.events.length;
      this.d.onBatch(shard, out, ms);
    }
  }

  /** Takes a checkpoint and waits until it is stored (stop, claim, quiet streams). */
  private async checkpoint(): Promise<void> {
    await this.beginCheckpoint();
    await this.committing;
  }

  /**
   * Starts a checkpoint of everything processed so far and returns without waiting for it, so the next batch is
   * processed while InfluxDB takes the lines: the meters' states are encoded now (this batch's truth), then, in
   * the background, it waits until every line written so far is in InfluxDB, enqueues the billing recomputes (only
   * then: a recompute that ran before would read the day without its intervals), and stores, per shard in one
   * MULTI, the states of the meters changed since the last checkpoint, the watermark, and XACK + XDEL of the
   * entries processed since. One checkpoint at a time; a failed one fails the next step (reload and replay).
   */
  private async beginCheckpoint(): Promise<void> {
    const previous = this.committing;
    this.committing = undefined;
    await previous;
    this.lastCheckpoint = performance.now();
    if (this.held.size === 0 && this.recomputes.length === 0) return;
    const shards = [...this.held].flatMap(([shard, held]) => {
      const work = this.work.get(shard);
      if (work === undefined) return [];
      const states: string[] = [];
      for (const id of held.dirty) {
        const st = work.states.get(id);
        if (st !== undefined) states.push(id, encodeMeterState(st));
      }
      return [{ shard, states, watermark: work.watermark, ackIds: held.ackIds }];
    });
    const recomputes = this.recomputes;
    this.held = new Map();
    this.recomputes = [];
    const flushed = this.d.flushLines(); // covers exactly the lines written so far
    this.committing = (async () => {
      await flushed;
      await this.d.enqueueRecomputes(recomputes);
      await Promise.all(shards.map((c) => this.commit(c)));
    })();
    this.committing.catch(() => undefined); // surfaced by the next await of it
  }

  /**
   * Stores one shard's checkpoint if this worker still holds its lease (one fenced script); a fenced one marks the
   * shard lost, to be dropped at the next step, and its work is left to the new owner's replay.
   */
  private async commit(c: { shard: number; states: string[]; watermark: number; ackIds: string[] }): Promise<void> {
    const value = this.d.leases.value(c.shard);
    if (value === undefined) return;
    const keyList = [streamKeys.lease(c.shard), streamKeys.state(c.shard), streamKeys.meta(c.shard), keys.readings(c.shard)];
    try {
      await FENCED_CHECKPOINT.run(this.d.redis, keyList, [value, STREAM_GROUP, String(c.watermark), c.states.length / 2, ...c.states, ...c.ackIds]);
    } catch (err) {
      if (!isFenced(err)) throw new Error('checkpoint failed', { cause: err });
      this.d.log.warn({ shard: c.shard }, 'checkpoint fenced: the shard lease was lost; its new owner replays from the last checkpoint');
      this.d.leases.lose(c.shard);
      this.fenced.add(c.shard);
      return;
    }
    await this.d.redis.hset(keys.watermark, String(c.shard), String(c.watermark));
  }

  private async deadLetter(out: BatchOutput): Promise<void> {
    if (out.deadLetters.length === 0) return;
    const p = this.d.redis.pipeline();
    const now = String(Date.now());
    for (const dl of out.deadLetters) {
      const payload = dl.payload.length > DLQ_PAYLOAD_BYTES ? dl.payload.slice(0, DLQ_PAYLOAD_BYTES) : dl.payload;
      const topic = dl.meterId === undefined ? 'stream' : `meters/${dl.meterId}/readings`;
      const fields = ['reason', dl.reason, 'topic', topic, 'payload', payload, 'ts', now, 'source', 'stream'];
      if (dl.meterId !== undefined) fields.push('meterId', dl.meterId);
      p.xadd(keys.dlq, 'MAXLEN', '~', String(this.d.dlqMaxLen), '*', ...fields);
    }
    await p.exec();
  }
}
