import { Compile } from 'typebox/compile';
import { describe, expect, it } from 'vitest';
import { webhookBody } from '../../src/alerts/notifier.js';
import { NotifyJob } from '../../src/contracts/alert.js';
import type { DrNotifyJob } from '../../src/contracts/dr.js';

const checkJob = Compile(NotifyJob);

const job: DrNotifyJob = {
  kind: 'dr',
  webhook: 'dr-ops',
  idempotencyKey: 'dr.EfnXJx_OrKDkibfl-LvrQQ.C-1',
  at: Date.parse('2026-12-06T10:00:00Z'),
  dr: {
    eventId: 'EfnXJx_OrKDkibfl-LvrQQ',
    start: '2026-12-07T16:00:00.000Z',
    end: '2026-12-07T18:00:00.000Z',
    requestedReductionKw: 250,
    participants: 12,
    customerId: 'C-1',
    meterIds: ['M-1', 'M-2'],
  },
};

describe('demand-response notify jobs', () => {
  it('are notify jobs beside the alert ones; a DR job without its event is not', () => {
    expect(checkJob.Check(job)).toBe(true);
    const { dr: _dr, ...bare } = job;
    expect(checkJob.Check(bare)).toBe(false);
    expect(checkJob.Check({ ...job, kind: 'other' })).toBe(false);
  });

  it('have a body of their own, told apart from alert bodies by `type`', () => {
    expect(JSON.parse(webhookBody(job))).toEqual({
      type: 'dr.event',
      idempotencyKey: 'dr.EfnXJx_OrKDkibfl-LvrQQ.C-1',
      at: '2026-12-06T10:00:00.000Z',
      event: { id: 'EfnXJx_OrKDkibfl-LvrQQ', start: '2026-12-07T16:00:00.000Z', end: '2026-12-07T18:00:00.000Z', requestedReductionKw: 250, participants: 12 },
      participant: { customerId: 'C-1', meterIds: ['M-1', 'M-2'] },
    });
  });
});
