import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { DetectionEvent } from '../contracts/events.js';
import type { MeterState } from '../domain/meter-state.js';
import { decodeMeterState, encodeMeterState } from '../domain/meter-state-codec.js';
import type { StreamSettings } from '../domain/stream-settings.js';
import { readingLine } from '../shared/line-protocol.js';
import { keys } from '../shared/redis.js';
import { parseEntry, parseEntryList, parseReadReply } from './entries.js';
import { STREAM_GROUP, streamKeys } from './keys.js';
import { addCounts, type BatchCounts, type BatchOutput, emptyCounts, type MeterRecord, type Recompute, ShardWork, type WorkSettings } from './shard-work.js';

/**
 * The consume loop: XREADGROUP over the owned shards, one batch per shard at a time, and every `checkpointMs`
 * a checkpoint that stores the changed meters' states, the watermark, XACK and XDEL in one MULTI per shard.
 * Outputs are written before the checkpoint that covers them and are idempotent (InfluxDB overwrites, BullMQ
 * jobIds dedupe), so a crash anywhere replays the un-acknowledged entries from the last checkpoint and yields the
 * same results. Between checkpoints the entries stay pending in the group; a meter read several times in one
 * period is encoded and stored once.
 */

export interface WorkerDeps {
  /** Commands and checkpoints. */
  redis: Redis;
  /** Blocking reads only. */
  reader: Redis;
  shards: readonly number[];
  consumer: string;
  work: WorkSettings;
  batchEntries: number;
  batchReadings: number;
  blockMs: number;
  claimIdleMs: number;
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
  private lastClaim = 0;
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

  constructor(private readonly d: WorkerDeps) {
    for (const s of d.shards) this.work.set(s, new ShardWork(s, d.work));
  }

  get settings(): StreamSettings {
    return this.d.work.settings;
  }

  watermarks(): Map<number, number> {
    return new Map([...this.work].map(([s, w]) => [s, w.watermark]));
  }

  async start(): Promise<void> {
    for (const shard of this.d.shards) {
      await this.ensureGroup(shard);
      await this.loadShard(shard);
    }
    this.loop = this.run();
  }

  /** The consumer group reads from the stream's start, so history appended before the first start is processed. */
  private async ensureGroup(shard: number): Promise<void> {
    try {
      await this.d.redis.xgroup('CREATE', keys.readings(shard), STREAM_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err instanceof Error && err.message.includes('BUSYGROUP'))) throw err;
    }
  }

  /** Stops reading, lets the batch in flight finish and checkpoint. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
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
        for (const shard of this.d.shards) {
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
    if (Date.now() - this.lastClaim > Math.max(this.d.claimIdleMs, 5000)) {
      // Our own processed entries must not look idle to XAUTOCLAIM: acknowledge them first.
      await this.checkpoint();
      await this.claim();
    }
    const pending = this.d.shards.filter((s) => this.cursor.get(s) !== '>');
    const targets = pending.length > 0 ? pending : [...this.d.shards];
    // The first read takes one entry per shard: entry sizes are unknown until then.
    const count = this.perEntry === 0 ? 1 : Math.max(1, Math.min(this.d.batchEntries, Math.floor(this.d.batchReadings / (this.perEntry * targets.length))));
    const args: Array<string | number> = ['GROUP', STREAM_GROUP, this.d.consumer, 'COUNT', count];
    if (pending.length === 0) args.push('BLOCK', this.d.blockMs);
    args.push('STREAMS', ...targets.map((s) => keys.readings(s)), ...targets.map((s) => this.cursor.get(s) ?? '>'));
    const reply = parseReadReply(await this.d.reader.call('XREADGROUP', ...args));
    const lists: Array<[number, Array<{ id: string; fields: string[] | null }>]> = [];
    for (const shard of targets) {
      const list = reply.get(keys.readings(shard)) ?? [];
      if (pending.length > 0) this.cursor.set(shard, list.at(-1)?.id ?? '>');
      if (list.length > 0) lists.push([shard, list]);
    }
    if (lists.length > 0) await this.batches(lists);
    else await this.checkpoint(); // quiet streams: acknowledge at once
    try {
      await this.d.idle();
    } catch (err) {
      this.d.log.warn({ err }, 'load judging failed; retried next round');
    }
  }

  /** Takes over entries another consumer left pending too long (a dead worker, a changed WORKER_COUNT). */
  private async claim(): Promise<void> {
    this.lastClaim = Date.now();
    for (const shard of this.d.shards) {
      const reply = await this.d.redis.call('XAUTOCLAIM', keys.readings(shard), STREAM_GROUP, this.d.consumer, this.d.claimIdleMs, '0-0', 'COUNT', 1000);
      const claimed = Array.isArray(reply) ? parseEntryList(reply[1]) : [];
      if (claimed.length > 0) {
        this.d.log.info({ shard, claimed: claimed.length }, 'claimed pending entries');
        this.cursor.set(shard, '0');
      }
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
      const held = this.held.get(shard) ?? { ackIds: [], dirty: new Set<string>() };
      this.held.set(shard, held);
      for (const id of out.ackIds) held.ackIds.push(id);
      for (const id of out.dirty) held.dirty.add(id);
      for (const r of out.recomputes) this.recomputes.push(r);
      done.push({ shard, out });
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
      await Promise.all(
        shards.map(async ({ shard, states, watermark, ackIds }) => {
          const m = this.d.redis.multi();
          if (states.length > 0) m.hset(streamKeys.state(shard), ...states);
          m.hset(streamKeys.meta(shard), 'wm', String(watermark));
          if (ackIds.length > 0) {
            m.xack(keys.readings(shard), STREAM_GROUP, ...ackIds);
            m.xdel(keys.readings(shard), ...ackIds);
          }
          const res = await m.exec();
          const failed = res?.find(([err]) => err !== null);
          if (res === null || failed !== undefined) throw new Error('checkpoint transaction failed', { cause: failed?.[0] ?? undefined });
          await this.d.redis.hset(keys.watermark, String(shard), String(watermark));
        }),
      );
    })();
    this.committing.catch(() => undefined); // surfaced by the next await of it
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
