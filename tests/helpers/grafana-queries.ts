import { readdirSync, readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { join } from 'node:path';

/**
 * Reads the provisioned Grafana dashboards and expands their InfluxQL the way Grafana's InfluxDB datasource
 * does ($timeFilter, $__interval, $__interval_ms, template variables), so tests can run every panel query
 * against a real InfluxDB. Only the subset of Grafana's behaviour that our dashboards use is implemented;
 * `unsupportedVariables` reports anything else, so a new construct fails a test instead of passing silently.
 */

export const DASHBOARD_DIR = new URL('../../grafana/dashboards/', import.meta.url).pathname;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

export function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function str(o: JsonObject, k: string): string | undefined {
  const v = o[k];
  return typeof v === 'string' ? v : undefined;
}

function list(o: JsonObject, k: string): JsonObject[] {
  const v = o[k];
  return Array.isArray(v) ? v.filter(isObject) : [];
}

export interface Dashboard {
  file: string;
  uid: string;
  title: string;
  json: JsonObject;
}

export interface Variable {
  name: string;
  type: string;
  /** InfluxQL for `query` variables; the text for `textbox`/`constant`. */
  query: string;
  multi: boolean;
  includeAll: boolean;
  allValue?: string;
  /** Current value saved in the JSON (textbox, constant, custom). */
  current: string[];
}

export interface PanelQuery {
  dashboard: string;
  /** `panel`, `annotation` or `variable`. */
  kind: 'panel' | 'annotation' | 'variable';
  /** Panel title, annotation name or variable name. */
  title: string;
  refId: string;
  query: string;
  /** The panel's minimum interval ("15m"), the floor of $__interval. */
  minInterval?: string;
  /** Relative time override ("30d"): the panel looks back this far from the range's end. */
  timeFrom?: string;
}

export interface Panel {
  id: number | undefined;
  type: string;
  title: string;
  json: JsonObject;
}

export function loadDashboards(dir = DASHBOARD_DIR): Dashboard[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => {
      const parsed: unknown = JSON.parse(readFileSync(join(dir, file), 'utf8'));
      if (!isObject(parsed)) throw new Error(`${file}: not a JSON object`);
      return { file, uid: str(parsed, 'uid') ?? '', title: str(parsed, 'title') ?? '', json: parsed };
    });
}

/** Every panel, including those nested in collapsed rows. */
export function panelsOf(d: Dashboard): Panel[] {
  const out: Panel[] = [];
  const walk = (panels: JsonObject[]): void => {
    for (const p of panels) {
      const id = p.id;
      out.push({ id: typeof id === 'number' ? id : undefined, type: str(p, 'type') ?? '', title: str(p, 'title') ?? '', json: p });
      walk(list(p, 'panels'));
    }
  };
  walk(list(d.json, 'panels'));
  return out;
}

export function variablesOf(d: Dashboard): Variable[] {
  const templating = d.json.templating;
  if (!isObject(templating)) return [];
  return list(templating, 'list').map((v) => {
    const q = v.query;
    const current = isObject(v.current) ? v.current.value : undefined;
    const allValue = str(v, 'allValue');
    return {
      name: str(v, 'name') ?? '',
      type: str(v, 'type') ?? '',
      query: typeof q === 'string' ? q : isObject(q) ? (str(q, 'query') ?? '') : '',
      multi: v.multi === true,
      includeAll: v.includeAll === true,
      ...(allValue !== undefined && allValue !== '' ? { allValue } : {}),
      current: typeof current === 'string' ? [current] : Array.isArray(current) ? current.filter((x): x is string => typeof x === 'string') : [],
    };
  });
}

/** Panel targets, annotation queries and variable queries of one dashboard. */
export function queriesOf(d: Dashboard): PanelQuery[] {
  const out: PanelQuery[] = [];
  for (const p of panelsOf(d)) {
    const minInterval = str(p.json, 'interval');
    const timeFrom = str(p.json, 'timeFrom');
    for (const t of list(p.json, 'targets')) {
      const query = str(t, 'query');
      if (query === undefined) continue;
      out.push({
        dashboard: d.uid,
        kind: 'panel',
        title: p.title,
        refId: str(t, 'refId') ?? '',
        query,
        ...(minInterval ? { minInterval } : {}),
        ...(timeFrom ? { timeFrom } : {}),
      });
    }
  }
  const annotations = d.json.annotations;
  if (isObject(annotations)) {
    for (const a of list(annotations, 'list')) {
      const target = a.target;
      const query = str(a, 'query') ?? (isObject(target) ? str(target, 'query') : undefined);
      if (query === undefined) continue; // Grafana's built-in annotation list has no query
      out.push({ dashboard: d.uid, kind: 'annotation', title: str(a, 'name') ?? '', refId: 'Anno', query });
    }
  }
  for (const v of variablesOf(d)) {
    if (v.type === 'query') out.push({ dashboard: d.uid, kind: 'variable', title: v.name, refId: v.name, query: v.query });
  }
  return out;
}

const VAR_RE = /\$\{([A-Za-z0-9_]+)(?::[A-Za-z]+)?\}|\[\[([A-Za-z0-9_]+)\]\]|\$([A-Za-z0-9_]+)/g;
/** Grafana's global variables the expansion below understands. */
export const BUILTIN_VARIABLES = ['timeFilter', '__interval', '__interval_ms'] as const;

/** Names of the variables a query refers to (`$x`, `${x}`, `[[x]]`). */
export function variablesUsed(query: string): string[] {
  const names = new Set<string>();
  for (const m of query.matchAll(VAR_RE)) {
    const name = m[1] ?? m[2] ?? m[3];
    if (name) names.add(name);
  }
  return [...names];
}

/** Variables in `query` that are neither built-ins we expand nor defined on the dashboard. */
export function unsupportedVariables(query: string, defined: Iterable<string>): string[] {
  const known = new Set<string>([...BUILTIN_VARIABLES, ...defined]);
  return variablesUsed(query).filter((n) => !known.has(n));
}

const DURATION_RE = /^(\d+)(ms|s|m|h|d|w)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

export function parseDuration(s: string): number {
  const m = DURATION_RE.exec(s.trim());
  const n = m?.[1];
  const unit = m?.[2];
  if (n === undefined || unit === undefined) throw new Error(`not a Grafana duration: "${s}"`);
  return Number(n) * (UNIT_MS[unit] ?? 0);
}

/** Grafana's interval rounding (kbn.roundInterval), to the steps a person would pick. */
const ROUND_STEPS: Array<[number, number]> = [
  [15, 10],
  [35, 20],
  [75, 50],
  [150, 100],
  [350, 200],
  [750, 500],
  [1500, 1000],
  [3500, 2000],
  [7500, 5000],
  [12500, 10000],
  [17500, 15000],
  [25000, 20000],
  [45000, 30000],
  [90000, 60000],
  [210000, 120000],
  [450000, 300000],
  [750000, 600000],
  [1050000, 900000],
  [1500000, 1200000],
  [2700000, 1800000],
  [5400000, 3600000],
  [9000000, 7200000],
  [16200000, 10800000],
  [32400000, 21600000],
  [86400000, 43200000],
  [604800000, 86400000],
  [1814400000, 604800000],
  [3628800000, 2592000000],
];

export function roundInterval(ms: number): number {
  for (const [limit, step] of ROUND_STEPS) if (ms < limit) return step;
  return 31_536_000_000;
}

export function formatInterval(ms: number): string {
  for (const [unit, size] of [
    ['w', 604_800_000],
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

export interface Range {
  fromMs: number;
  toMs: number;
}

/** $__interval for a panel: range / maxDataPoints, rounded, never below the panel's or datasource's minimum. */
export function intervalFor(range: Range, q: Pick<PanelQuery, 'minInterval'>, opts: { maxDataPoints?: number; datasourceMin?: string } = {}): number {
  const raw = roundInterval((range.toMs - range.fromMs) / (opts.maxDataPoints ?? 1000));
  const floor = Math.max(q.minInterval ? parseDuration(q.minInterval) : 0, opts.datasourceMin ? parseDuration(opts.datasourceMin) : 0);
  return Math.max(raw, floor);
}

/** What a variable stands for at expansion time: concrete values, or "All". */
export type VariableValue = { values: string[] } | { all: true };

function escapeRegex(s: string): string {
  return s.replace(/[\\^$*+?.()|[\]{}/]/g, '\\$&');
}

/** How Grafana's InfluxDB datasource renders a variable: regex-escaped alternatives, or allValue for All. */
export function renderVariable(v: Variable, value: VariableValue): string {
  if (v.type === 'textbox' || v.type === 'constant') {
    return 'values' in value ? (value.values[0] ?? '') : '';
  }
  if ('all' in value) {
    if (v.allValue !== undefined) return v.allValue;
    throw new Error(`variable ${v.name}: All without allValue needs its values`);
  }
  const escaped = value.values.map(escapeRegex);
  if (escaped.length === 0) throw new Error(`variable ${v.name}: no value`);
  return escaped.length === 1 ? (escaped[0] ?? '') : `(${escaped.join('|')})`;
}

export interface ExpandOptions {
  range: Range;
  variables: Variable[];
  values: ReadonlyMap<string, VariableValue>;
  datasourceMin?: string;
  maxDataPoints?: number;
}

/** The InfluxQL Grafana would send for `q`. Throws on a variable it cannot expand. */
export function expandQuery(q: PanelQuery, opts: ExpandOptions): string {
  const range: Range = q.timeFrom ? { fromMs: opts.range.toMs - parseDuration(q.timeFrom), toMs: opts.range.toMs } : opts.range;
  const intervalMs = intervalFor(range, q, {
    ...(opts.maxDataPoints !== undefined ? { maxDataPoints: opts.maxDataPoints } : {}),
    ...(opts.datasourceMin !== undefined ? { datasourceMin: opts.datasourceMin } : {}),
  });
  const byName = new Map(opts.variables.map((v) => [v.name, v]));
  return q.query.replace(VAR_RE, (whole, a: string | undefined, b: string | undefined, c: string | undefined) => {
    const name = a ?? b ?? c ?? '';
    switch (name) {
      case 'timeFilter':
        return `time >= ${Math.trunc(range.fromMs)}ms and time <= ${Math.trunc(range.toMs)}ms`;
      case '__interval':
        return formatInterval(intervalMs);
      case '__interval_ms':
        return String(intervalMs);
    }
    const v = byName.get(name);
    const value = opts.values.get(name);
    if (v === undefined || value === undefined) throw new Error(`${q.dashboard} / ${q.title}: cannot expand ${whole}`);
    return renderVariable(v, value);
  });
}

/** Datasource uids a panel, target or annotation refers to (`${DS}`-style inputs are reported as written). */
export function datasourceUids(d: Dashboard): Array<{ where: string; uid: string }> {
  const out: Array<{ where: string; uid: string }> = [];
  const take = (where: string, ds: Json | undefined): void => {
    if (isObject(ds)) {
      const uid = str(ds, 'uid');
      if (uid !== undefined) out.push({ where, uid });
    } else if (typeof ds === 'string') {
      out.push({ where, uid: ds });
    }
  };
  for (const p of panelsOf(d)) {
    take(`panel "${p.title}"`, p.json.datasource);
    for (const t of list(p.json, 'targets')) take(`panel "${p.title}" target ${str(t, 'refId') ?? ''}`, t.datasource);
  }
  const annotations = d.json.annotations;
  if (isObject(annotations)) for (const a of list(annotations, 'list')) take(`annotation "${str(a, 'name') ?? ''}"`, a.datasource);
  const templating = d.json.templating;
  if (isObject(templating)) for (const v of list(templating, 'list')) take(`variable "${str(v, 'name') ?? ''}"`, v.datasource);
  return out;
}

export const ALERTING_FILE = new URL('../../grafana/provisioning/alerting/meterflow.yaml', import.meta.url).pathname;

export interface AlertRuleQuery {
  rule: string;
  title: string;
  refId: string;
  datasourceUid: string;
  query: string;
  /** relativeTimeRange.from, seconds back from now. */
  fromSeconds: number;
}

export interface AlertRuleExpression {
  rule: string;
  refId: string;
  type: string;
  expression: string;
}

/** The provisioned alert rules' data queries and server-side expressions, as Grafana reads the file. */
export function loadAlertRules(file = ALERTING_FILE): {
  queries: AlertRuleQuery[];
  expressions: AlertRuleExpression[];
  conditions: Array<{ rule: string; condition: string; refIds: string[] }>;
} {
  const doc: unknown = parseYaml(readFileSync(file, 'utf8'));
  const queries: AlertRuleQuery[] = [];
  const expressions: AlertRuleExpression[] = [];
  const conditions: Array<{ rule: string; condition: string; refIds: string[] }> = [];
  const groups = isObject(doc) ? list(doc, 'groups') : [];
  for (const g of groups) {
    for (const r of list(g, 'rules')) {
      const rule = str(r, 'uid') ?? '';
      const refIds: string[] = [];
      for (const d of list(r, 'data')) {
        const model = isObject(d.model) ? d.model : {};
        const refId = str(d, 'refId') ?? '';
        refIds.push(refId);
        const ds = str(d, 'datasourceUid') ?? '';
        if (ds === '__expr__') {
          expressions.push({ rule, refId, type: str(model, 'type') ?? '', expression: str(model, 'expression') ?? '' });
          continue;
        }
        const range = isObject(d.relativeTimeRange) ? d.relativeTimeRange : {};
        const from = range.from;
        queries.push({
          rule,
          title: str(r, 'title') ?? '',
          refId,
          datasourceUid: ds,
          query: str(model, 'query') ?? '',
          fromSeconds: typeof from === 'number' ? from : 600,
        });
      }
      conditions.push({ rule, condition: str(r, 'condition') ?? '', refIds });
    }
  }
  return { queries, expressions, conditions };
}
