import { createReadStream } from 'node:fs';
import { parse as parser } from 'csv-parse';
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';

/** CSV for every file and response meterflow reads or writes (RFC 4180 quoting), through csv-parse / csv-stringify. */

export type CsvCell = string | number | boolean | null | undefined;

/**
 * Rows as CSV with a header line. Booleans are written `true`/`false`, null and undefined as empty cells. `eol`:
 * '\n' for files, '\r\n' where RFC 4180 is the contract (the billing API's text/csv).
 */
export function toCsv(header: readonly string[], rows: ReadonlyArray<readonly CsvCell[]>, eol: '\n' | '\r\n' = '\n'): string {
  return csvLines([header, ...rows], eol);
}

/** Rows as CSV lines without a header (appending to a file that has one). */
export function csvLines(rows: ReadonlyArray<readonly CsvCell[]>, eol: '\n' | '\r\n' = '\n'): string {
  return stringify(
    rows.map((r) => [...r]),
    { record_delimiter: eol === '\r\n' ? 'windows' : 'unix', cast: { boolean: (v) => String(v) } },
  );
}

/** Records (objects) as CSV with the given columns, in that order. */
export function recordsToCsv(header: readonly string[], records: ReadonlyArray<Readonly<Record<string, CsvCell>>>, eol: '\n' | '\r\n' = '\n'): string {
  return toCsv(
    header,
    records.map((r) => header.map((h) => r[h])),
    eol,
  );
}

/** Cells of every non-blank line (quoted fields, "" escapes, CRLF or LF, a leading BOM); rows may differ in length. */
export function parseCsv(text: string): string[][] {
  const rows: unknown = parse(text, { relax_column_count: true, skip_empty_lines: true, bom: true });
  if (!Array.isArray(rows)) return [];
  return rows.filter((r): r is string[] => Array.isArray(r) && r.every((c) => typeof c === 'string')).filter((r) => !(r.length === 1 && r[0]?.trim() === ''));
}

/** The rows of a CSV file after its header, streamed (files of millions of rows). */
export async function* readCsvRows(path: string): AsyncGenerator<string[]> {
  for await (const row of createReadStream(path).pipe(parser({ from_line: 2, skip_empty_lines: true, relax_column_count: true }))) {
    if (Array.isArray(row)) yield row.map(String);
  }
}
