import { describe, expect, it } from 'vitest';
import { DeadlineHeap } from '../../src/stream/deadline-heap.js';

describe('silent deadlines heap', () => {
  it('pops by deadline, ties by meter id, whatever the insertion order', () => {
    const items: Array<[number, string]> = [
      [50, 'M-3'],
      [10, 'M-9'],
      [50, 'M-1'],
      [30, 'M-2'],
      [10, 'M-0'],
      [70, 'M-5'],
      [30, 'M-2'],
    ];
    const orders = [items, [...items].reverse(), [items[3], items[0], items[6], items[1], items[5], items[2], items[4]]];
    for (const order of orders) {
      const h = new DeadlineHeap();
      for (const it of order) if (it) h.push(it[0], it[1]);
      expect(h.size).toBe(7);
      const out: string[] = [];
      for (let x = h.pop(); x !== undefined; x = h.pop()) out.push(`${x.deadline} ${x.meterId}`);
      expect(out).toEqual(['10 M-0', '10 M-9', '30 M-2', '30 M-2', '50 M-1', '50 M-3', '70 M-5']);
      expect(h.peek()).toBeUndefined();
    }
  });
});
