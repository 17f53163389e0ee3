/**
 * Min-heap of (deadline, meterId): which meters the shard watermark has made silent, without scanning
 * every meter on every entry. Entries may be stale; the caller checks the meter's current deadline on pop.
 */
export class DeadlineHeap {
  private readonly at: number[] = [];
  private readonly ids: string[] = [];

  get size(): number {
    return this.at.length;
  }

  push(deadline: number, meterId: string): void {
    this.at.push(deadline);
    this.ids.push(meterId);
    let i = this.at.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Meter ids of entries due by `bound` (unordered; may include stale entries). */
  dueBy(bound: number): string[] {
    const out: string[] = [];
    this.at.forEach((t, i) => {
      const id = this.ids[i];
      if (t <= bound && id !== undefined) out.push(id);
    });
    return out;
  }

  /** Smallest deadline, if any. */
  peek(): number | undefined {
    return this.at[0];
  }

  pop(): { deadline: number; meterId: string } | undefined {
    const deadline = this.at[0];
    const meterId = this.ids[0];
    if (deadline === undefined || meterId === undefined) return undefined;
    const lastAt = this.at.pop();
    const lastId = this.ids.pop();
    if (this.at.length > 0 && lastAt !== undefined && lastId !== undefined) {
      this.at[0] = lastAt;
      this.ids[0] = lastId;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.at.length && this.less(l, m)) m = l;
        if (r < this.at.length && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return { deadline, meterId };
  }

  // Ties broken by meter id: the pop order, hence the event order, does not depend on insertion order.
  private less(a: number, b: number): boolean {
    const da = this.at[a] ?? Infinity;
    const db = this.at[b] ?? Infinity;
    return da < db || (da === db && (this.ids[a] ?? '') < (this.ids[b] ?? ''));
  }

  private swap(a: number, b: number): void {
    const ta = this.at[a] ?? 0;
    const ia = this.ids[a] ?? '';
    this.at[a] = this.at[b] ?? 0;
    this.ids[a] = this.ids[b] ?? '';
    this.at[b] = ta;
    this.ids[b] = ia;
  }
}
