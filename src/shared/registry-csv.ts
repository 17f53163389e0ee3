import { Compile } from 'typebox/compile';
import { CUSTOMER_CSV_HEADER, CustomerRecord, TRANSFORMER_CSV_HEADER, TransformerRecord } from '../contracts/registry.js';
import { parseCsv } from './csv.js';

export interface CsvRowError {
  line: number;
  field?: string;
  message: string;
}

type Coerce = 'string' | 'number' | 'boolean' | 'integer';

function parseRecords<T>(
  text: string,
  header: readonly string[],
  types: Record<string, Coerce>,
  validator: { Check(v: unknown): v is T; Errors(v: unknown): Array<{ instancePath: string; message: string }> },
): { records: T[]; errors: CsvRowError[] } {
  const rows = parseCsv(text);
  const errors: CsvRowError[] = [];
  const records: T[] = [];
  const head = rows[0]?.map((h) => h.trim());
  if (!head) return { records, errors: [{ line: 1, message: 'empty file' }] };
  const missing = header.filter((h) => !head.includes(h));
  if (missing.length > 0) return { records, errors: [{ line: 1, message: `header lacks ${missing.join(', ')} (expected ${header.join(',')})` }] };
  rows.slice(1).forEach((cells, i) => {
    const line = i + 2;
    const obj: Record<string, unknown> = {};
    for (const h of header) {
      const raw = (cells[head.indexOf(h)] ?? '').trim();
      const t = types[h] ?? 'string';
      if (t === 'string') obj[h] = raw;
      else if (t === 'boolean') obj[h] = raw === 'true' ? true : raw === 'false' ? false : raw;
      else obj[h] = raw !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
    }
    if (validator.Check(obj)) records.push(obj);
    else {
      const e = validator.Errors(obj)[0];
      const field = e?.instancePath.replace(/^\//, '').split('/')[0];
      errors.push({
        line,
        field: field || undefined,
        message: `${field || 'row'}: ${e?.message ?? 'invalid'} (got ${JSON.stringify(field ? obj[field] : cells)})`,
      });
    }
  });
  return { records, errors };
}

const customerValidator = Compile(CustomerRecord);
const transformerValidator = Compile(TransformerRecord);

export function parseCustomersCsv(text: string): { records: CustomerRecord[]; errors: CsvRowError[] } {
  return parseRecords(text, CUSTOMER_CSV_HEADER, { contractKw: 'number', hasPv: 'boolean', intervalMinutes: 'integer' }, customerValidator);
}

export function parseTransformersCsv(text: string): { records: TransformerRecord[]; errors: CsvRowError[] } {
  return parseRecords(text, TRANSFORMER_CSV_HEADER, { ratingKva: 'number' }, transformerValidator);
}
