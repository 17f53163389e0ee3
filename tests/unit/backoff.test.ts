import { describe, expect, it } from 'vitest';
import { backoffMs } from '../../src/domain/backoff.js';
import { notifyBackoff } from '../../src/alerts/dispatcher.js';

describe('backoffMs', () => {
  it.each([
    [0, 100],
    [1, 200],
    [2, 400],
    [5, 3200],
    [6, 5000],
    [1000, 5000],
    [-1, 100],
    [Number.NaN, 100],
  ])('attempt %d → %d ms (base 100, cap 5000)', (attempt, ms) => {
    expect(backoffMs(attempt, 100, 5000)).toBe(ms);
  });
});

describe('notifyBackoff', () => {
  it('covers a receiver down for 5 minutes within the shipped 20 attempts, and retries at least every minute', () => {
    const delay = notifyBackoff({ backoffMs: 2000, maxBackoffMs: 60_000 });
    const delays = Array.from({ length: 19 }, (_, i) => delay(i + 1));
    expect(delays.slice(0, 7)).toEqual([2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
    expect(Math.max(...delays)).toBe(60_000);
    expect(delays.reduce((a, b) => a + b, 0)).toBe(2000 + 4000 + 8000 + 16_000 + 32_000 + 14 * 60_000);
  });
});
