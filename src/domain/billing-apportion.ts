/**
 * Splits an integer amount of watt-hours into integer parts proportional to `weights` (largest remainder),
 * so the parts always sum exactly to `total`: billing never creates or loses a watt-hour by rounding.
 * Ties in the remainder go to the earlier part, so the split is deterministic.
 */
export function apportion(total: number, weights: readonly number[]): number[] {
  if (!Number.isSafeInteger(total)) throw new RangeError(`apportion: total must be a safe integer, got ${total}`);
  if (weights.length === 0) throw new RangeError('apportion: no parts');
  if (weights.length === 1) return [total];
  let sum = 0;
  for (const w of weights) {
    if (!(w >= 0) || !Number.isSafeInteger(w)) throw new RangeError(`apportion: weights must be non-negative integers, got ${w}`);
    sum += w;
  }
  if (sum === 0) return weights.map((_, i) => (i === 0 ? total : 0));
  // BigInt: total × weight can exceed 2^53 (a 10 MWh interval × 3.6e6 ms).
  const T = BigInt(total);
  const S = BigInt(sum);
  const parts: number[] = [];
  const rems: { i: number; rem: bigint }[] = [];
  let given = 0;
  weights.forEach((w, i) => {
    const p = T * BigInt(w);
    // Floor division also for negative totals (export netting), so remainders are non-negative.
    let q = p / S;
    let r = p % S;
    if (r < 0n) {
      q -= 1n;
      r += S;
    }
    parts.push(Number(q));
    rems.push({ i, rem: r });
    given += Number(q);
  });
  rems.sort((a, b) => (a.rem === b.rem ? a.i - b.i : a.rem > b.rem ? -1 : 1));
  for (let k = 0; k < total - given; k++) {
    const idx = rems[k]?.i;
    if (idx !== undefined) parts[idx] = (parts[idx] ?? 0) + 1;
  }
  return parts;
}
