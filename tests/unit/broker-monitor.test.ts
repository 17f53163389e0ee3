import { describe, expect, it } from 'vitest';
import { applyBrokerMessage, type BrokerStats } from '../../src/ingest/broker-monitor.js';

describe('applyBrokerMessage', () => {
  it('reads the $SYS figures it knows and ignores the rest', () => {
    const stats: BrokerStats = {};
    applyBrokerMessage(stats, '$SYS/broker/store/messages/count', Buffer.from('27'));
    applyBrokerMessage(stats, '$SYS/broker/store/messages/bytes', Buffer.from(' 133\n'));
    applyBrokerMessage(stats, '$SYS/broker/publish/messages/dropped', Buffer.from('4'));
    applyBrokerMessage(stats, '$SYS/broker/uptime', Buffer.from('1727 seconds'));
    applyBrokerMessage(stats, '$SYS/broker/store/messages/count', Buffer.from('not a number'));
    applyBrokerMessage(stats, '$SYS/broker/store/messages/bytes', Buffer.from('-1'));
    expect(stats).toEqual({ stored: 27, storedBytes: 133, dropped: 4 });
  });
});
