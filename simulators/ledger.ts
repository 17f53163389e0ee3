import { closeSync, openSync, writeSync } from 'node:fs';
import { csvLines, toCsv, type CsvCell } from '../src/shared/csv.js';
import type { LedgerRow } from './engine.js';

/**
 * ledger.csv: the true register of every meter at every one of its interval ends, in time order.
 * Billing exactness compares period totals with it; `published` = 0 marks ends no reading was sent for
 * (silent, unpowered, clock-skewed), where a pipeline can only estimate.
 */
export const LEDGER_HEADER = ['meterId', 'tsMs', 'importWh', 'exportWh', 'published'] as const;

const ledgerCells = (r: LedgerRow): CsvCell[] => [r.meterId, r.ts, r.importWh, r.exportWh, r.published ? 1 : 0];

/** Buffered synchronous writer: the generator runs synchronously, and sync writes keep the memory flat. */
export class LedgerWriter {
  private fd: number | undefined;
  private buf: CsvCell[][] = [];
  rows = 0;

  constructor(path: string) {
    this.fd = openSync(path, 'w');
    writeSync(this.fd, toCsv(LEDGER_HEADER, []));
  }

  write(r: LedgerRow): void {
    this.buf.push(ledgerCells(r));
    this.rows++;
    if (this.buf.length >= 20_000) this.flush();
  }

  flush(): void {
    if (this.fd !== undefined && this.buf.length > 0) writeSync(this.fd, csvLines(this.buf));
    this.buf = [];
  }

  close(): void {
    this.flush();
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
