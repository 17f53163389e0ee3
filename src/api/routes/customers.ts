import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import { CustomerRecord, TransformerRecord } from '../../contracts/registry.js';
import { parseCustomersCsv, parseTransformersCsv, type CsvRowError } from '../../shared/registry-csv.js';
import { METER_ID_PATTERN } from '../../contracts/reading.js';
import type { RoutePlugin } from '../app.js';
import { ErrorBody } from '../../contracts/http.js';

const ImportResult = Type.Object({
  imported: Type.Integer(),
  rejected: Type.Array(Type.Object({ line: Type.Integer(), field: Type.Optional(Type.String()), message: Type.String() })),
});

const customerCheck = Compile(CustomerRecord);
const transformerCheck = Compile(TransformerRecord);

/** JSON array → records + per-element errors (element index reported as `line`, 1-based). */
function parseJsonRecords<T>(
  body: unknown,
  check: { Check(v: unknown): v is T; Errors(v: unknown): Array<{ instancePath: string; message: string }> },
): { records: T[]; errors: CsvRowError[] } {
  const items = Array.isArray(body) ? body : [body];
  const records: T[] = [];
  const errors: CsvRowError[] = [];
  items.forEach((item: unknown, i) => {
    if (check.Check(item)) records.push(item);
    else {
      const e = check.Errors(item)[0];
      const field = e?.instancePath.replace(/^\//, '') || undefined;
      errors.push({ line: i + 1, field, message: `${field ?? 'record'}: ${e?.message ?? 'invalid'}` });
    }
  });
  return { records, errors };
}

/** CSV that does not parse (an unterminated or misplaced quote) is the client's mistake: a 400 like a bad row, never a 500. */
function fromCsv<T>(parse: (text: string) => { records: T[]; errors: CsvRowError[] }, text: string): { records: T[]; errors: CsvRowError[] } {
  try {
    return parse(text);
  } catch (err) {
    const line = err instanceof Error && 'lines' in err && typeof err.lines === 'number' ? Math.max(1, err.lines) : 1;
    return { records: [], errors: [{ line, message: `not readable as CSV: ${err instanceof Error ? err.message.slice(0, 200) : 'parse error'}` }] };
  }
}

/** Customer and transformer registry: import/upsert (CSV or JSON, scope admin) and look-up. */
export const customerRoutes: RoutePlugin = async (app, deps) => {
  const body = Type.Union([Type.String({ description: 'CSV with the registry header' }), Type.Array(Type.Unknown()), Type.Object({})]);

  app.post(
    '/api/v1/customers',
    {
      bodyLimit: deps.config.api.importBodyLimit,
      preHandler: deps.auth('admin'),
      schema: { tags: ['registry'], summary: 'Upsert customers (JSON array of records or text/csv)', body, response: { 200: ImportResult, 400: ImportResult } },
    },
    async (req, reply) => {
      const parsed = typeof req.body === 'string' ? fromCsv(parseCustomersCsv, req.body) : parseJsonRecords(req.body, customerCheck);
      const imported = await deps.registry.upsertMeters(parsed.records);
      return reply.code(parsed.errors.length ? 400 : 200).send({ imported, rejected: parsed.errors });
    },
  );

  app.post(
    '/api/v1/transformers',
    {
      bodyLimit: deps.config.api.importBodyLimit,
      preHandler: deps.auth('admin'),
      schema: { tags: ['registry'], summary: 'Upsert transformers (JSON array or text/csv)', body, response: { 200: ImportResult, 400: ImportResult } },
    },
    async (req, reply) => {
      const parsed = typeof req.body === 'string' ? fromCsv(parseTransformersCsv, req.body) : parseJsonRecords(req.body, transformerCheck);
      const imported = await deps.registry.upsertTransformers(parsed.records);
      return reply.code(parsed.errors.length ? 400 : 200).send({ imported, rejected: parsed.errors });
    },
  );

  app.get(
    '/api/v1/customers/:meterId',
    {
      preHandler: deps.auth(),
      schema: {
        tags: ['registry'],
        params: Type.Object({ meterId: Type.String({ pattern: METER_ID_PATTERN }) }),
        response: { 200: CustomerRecord, 404: ErrorBody },
      },
    },
    async (req, reply) => {
      const m = await deps.registry.getMeter(req.params.meterId);
      if (!m.registered) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `meter ${req.params.meterId} is not in the registry` });
      const { registered: _r, ...record } = m;
      return record;
    },
  );
};
