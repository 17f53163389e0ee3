/**
 * Redis keys owned by the stream worker. Per-shard keys share the stream's `{N}` hash tag, so the
 * checkpoint (lease check + states + position + XACK/XDEL) is one script in one Cluster slot.
 */
export const streamKeys = {
  /** Hash meterId → serialised MeterState (src/contracts/meter-checkpoint.ts). */
  state: (shard: number) => `mf:state:{${shard}}`,
  /** Hash: `wm` = shard watermark (ms), checkpointed with the states. */
  meta: (shard: number) => `mf:stream:{${shard}}`,
  /** The shard's lease (`<consumer>|<token>`, with a TTL) and its fencing counter (src/stream/leases.ts). */
  lease: (shard: number) => `mf:lease:{${shard}}`,
  fence: (shard: number) => `mf:lease:{${shard}}:fence`,
  /** One worker at a time judges the load intervals (src/stream/leases.ts `Turn`). */
  judgeTurn: 'mf:load:judge',
  /** Sorted set of live stream workers (consumer names) scored by heartbeat expiry (ms). */
  workers: 'mf:stream:workers',
  /** Hash `meterId@intervalStart` → net demand W contributed to one transformer's aggregation interval. */
  load: (transformerId: string, slotStart: number) => `mf:load:{${transformerId}}:${slotStart}`,
  /** Hash transformerId → net demand W of one aggregation interval, for the fleet sum. */
  systemLoad: (slotStart: number) => `mf:sysload:${slotStart}`,
  /** Sorted sets of `transformerId|slotStart` (and `slotStart`) to judge, scored by the slot end. */
  loadDue: 'mf:load:due',
  systemDue: 'mf:sysload:due',
  /** Hash transformerId (or `system`) → "<slotStart>|<0|1>": last judged slot and whether it was firing. */
  loadActive: 'mf:load:active',
  /** Sorted set of load keys scored by the event time after which they are dropped. */
  loadGc: 'mf:load:gc',
} as const;

/** Consumer group of the stream workers on every shard stream. */
export const STREAM_GROUP = 'stream';
