/** FNV-1a 32-bit: stable across processes and languages, cheap for short ids. `seed`: another offset basis. */
export function fnv1a32(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Stream shard that owns a meter: every reading of one meter lands on one shard, so its state lives in one worker. */
export function shardOf(meterId: string, shards: number): number {
  return fnv1a32(meterId) % shards;
}

/** Shards owned by worker `index` of `count` under static assignment. */
export function ownedShards(shards: number, index: number, count: number): number[] {
  const owned: number[] = [];
  for (let s = 0; s < shards; s++) if (s % count === index) owned.push(s);
  return owned;
}
