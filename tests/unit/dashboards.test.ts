import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  datasourceUids,
  expandQuery,
  isObject,
  loadAlertRules,
  loadDashboards,
  panelsOf,
  queriesOf,
  unsupportedVariables,
  variablesOf,
  variablesUsed,
  type VariableValue,
} from '../helpers/grafana-queries.js';

const PROVISIONING = new URL('../../grafana/provisioning/', import.meta.url).pathname;

/**
 * What the dashboards may read: the InfluxDB contract of DESIGN.md, with the fields the writers added
 * (src/alerts/dispatcher.ts alertLine, src/contracts/billing.ts readFields, src/ingest/ingest.ts statsLines).
 * `billing_daily` also has one `band_<band>_wh` per time-of-use band, read with the regex /^band_/.
 */
const CONTRACT: Record<string, { tags: string[]; fields: string[] }> = {
  reading: { tags: ['meter', 'feeder'], fields: ['import_wh', 'export_wh', 'power_w', 'voltage_v'] },
  interval: {
    tags: ['meter', 'feeder', 'transformer', 'class', 'band'],
    fields: ['wh', 'export_wh', 'demand_w', 'register_wh', 'estimated', 'anomaly', 'anomaly_score', 'expected_wh'],
  },
  baseline: { tags: ['meter'], fields: ['expected_wh', 'spread_wh'] },
  anomaly: { tags: ['meter', 'type', 'severity'], fields: ['value', 'expected', 'score', 'status', 'reason'] },
  feeder_load: { tags: ['feeder', 'transformer'], fields: ['demand_kw', 'rating_kw', 'utilization'] },
  system_load: { tags: [], fields: ['demand_kw', 'threshold_kw'] },
  alert: {
    tags: ['type', 'severity', 'subject'],
    fields: ['state', 'message', 'count', 'alert_id', 'change', 'flapping', 'customers_affected', 'critical_customers', 'duration_s'],
  },
  billing_daily: {
    tags: ['meter', 'customer', 'tariff'],
    fields: ['total_wh', 'estimated_intervals', 'intervals', 'completeness', 'max_demand_w', 'start_register_wh', 'end_register_wh', 'export_wh', 'quality'],
  },
  // Counts are deltas per point; influx_retries / influx_failed_batches count since start; backlog and lag are gauges.
  pipeline: {
    tags: ['role', 'instance'],
    fields: [
      'messages',
      'readings',
      'rejected',
      'duplicates',
      'lag',
      'influx_backlog',
      'influx_retries',
      'influx_failed_batches',
      'broker_stored',
      'broker_stored_bytes',
      'broker_dropped',
    ],
  },
  dlq: { tags: ['reason', 'instance'], fields: ['count'] },
  // Per-band fields band_<band>_wh / band_<band>_share besides these (src/shared/profile-store.ts).
  customer_profile: {
    tags: ['customer', 'class'],
    fields: [
      'month',
      'energy_wh',
      'quality',
      'max_demand_w',
      'load_factor',
      'weekday_weekend_ratio',
      'change_prev_month',
      'change_last_year',
      'tier',
      'class_rank',
      'class_size',
      'advice_currency',
      'advice_current_tariff',
      'advice_current_minor',
      'advice_best_tariff',
      'advice_best_minor',
      'advice_saving_minor',
    ],
  },
};

/** Regex field selections allowed, per measurement: the per-band fields. */
const FIELD_REGEXES: Record<string, string> = { billing_daily: '^band_', customer_profile: '^band_.*_wh$' };

/** Panels that show data and so need a query. */
const DATA_PANELS = new Set(['timeseries', 'stat', 'table', 'bargauge', 'status-history', 'state-timeline', 'barchart', 'heatmap', 'gauge', 'piechart']);

function provisionedDatasources(): Array<{ uid: string; type: string; jsonData: Record<string, unknown> }> {
  const dir = join(PROVISIONING, 'datasources');
  const out: Array<{ uid: string; type: string; jsonData: Record<string, unknown> }> = [];
  for (const f of readdirSync(dir).filter((x) => /\.ya?ml$/.test(x))) {
    const doc: unknown = parseYaml(readFileSync(join(dir, f), 'utf8'));
    const list = isObject(doc) && Array.isArray(doc.datasources) ? doc.datasources : [];
    for (const ds of list) {
      if (!isObject(ds)) continue;
      out.push({
        uid: typeof ds.uid === 'string' ? ds.uid : '',
        type: typeof ds.type === 'string' ? ds.type : '',
        jsonData: isObject(ds.jsonData) ? ds.jsonData : {},
      });
    }
  }
  return out;
}

const dashboards = loadDashboards();

describe('grafana provisioning', () => {
  it('defines one InfluxQL datasource with a fixed uid and a token header', () => {
    const ds = provisionedDatasources();
    expect(ds.map((d) => [d.uid, d.type, d.jsonData.version, d.jsonData.httpHeaderName1])).toEqual([
      ['meterflow-influxdb', 'influxdb', 'InfluxQL', 'Authorization'],
    ]);
  });

  it('loads dashboards from the directory docker compose mounts', () => {
    const doc: unknown = parseYaml(readFileSync(join(PROVISIONING, 'dashboards', 'meterflow.yaml'), 'utf8'));
    const providers = isObject(doc) && Array.isArray(doc.providers) ? doc.providers : [];
    const paths = providers.map((p) => (isObject(p) && isObject(p.options) ? p.options.path : undefined));
    expect(paths).toEqual(['/etc/meterflow/dashboards']);
    const compose = readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8');
    expect(compose).toContain('./grafana/dashboards:/etc/meterflow/dashboards:ro');
    expect(compose).toContain('./grafana/provisioning:/etc/grafana/provisioning:ro');
  });
});

describe('dashboards', () => {
  it("are the six of issue 7 and issue 18's customer insights, each with a unique uid and title", () => {
    expect(dashboards.map((d) => d.uid).sort()).toEqual([
      'meterflow-alerts',
      'meterflow-billing',
      'meterflow-feeders',
      'meterflow-fleet',
      'meterflow-insights',
      'meterflow-meter',
      'meterflow-pipeline',
    ]);
    expect(new Set(dashboards.map((d) => d.title)).size).toBe(7);
  });

  it('declare the template variables of issue 7', () => {
    const vars = Object.fromEntries(dashboards.map((d) => [d.uid, variablesOf(d).map((v) => v.name)]));
    expect(vars).toEqual({
      'meterflow-alerts': ['type', 'severity'],
      'meterflow-billing': ['feeder', 'transformer', 'class', 'meter', 'tz'],
      'meterflow-feeders': ['feeder', 'transformer'],
      'meterflow-fleet': ['feeder', 'transformer', 'class'],
      'meterflow-insights': ['class'],
      'meterflow-meter': ['feeder', 'transformer', 'class', 'meter', 'tz'],
      'meterflow-pipeline': ['instance'],
    });
    for (const d of dashboards) {
      for (const v of variablesOf(d).filter((x) => x.type === 'query')) {
        expect(v.query, `${d.uid} ${v.name}`).toMatch(/^SHOW TAG VALUES FROM "[a-z_]+" WITH KEY = "[a-z_]+"/);
        if (v.multi) expect(v.allValue, `${d.uid} ${v.name}`).toBe('.*');
      }
    }
  });

  for (const d of dashboards) {
    describe(d.title, () => {
      const panels = panelsOf(d);

      it('has unique panel ids', () => {
        const ids = panels.map((p) => p.id);
        expect(ids.every((id) => typeof id === 'number')).toBe(true);
        expect(new Set(ids).size).toBe(ids.length);
      });

      it('refers only to the provisioned datasource', () => {
        const defined = new Set(provisionedDatasources().map((x) => x.uid));
        const refs = datasourceUids(d);
        expect(refs.length).toBeGreaterThan(0);
        expect(refs.filter((r) => !defined.has(r.uid))).toEqual([]);
      });

      it('has a query behind every data panel and a description on every panel', () => {
        const problems: string[] = [];
        for (const p of panels) {
          if (p.type === 'row') continue;
          if (!DATA_PANELS.has(p.type)) problems.push(`"${p.title}": unexpected panel type ${p.type}`);
          const description = p.json.description;
          if (typeof description !== 'string' || description.length < 20) problems.push(`"${p.title}": no description`);
          const targets = Array.isArray(p.json.targets) ? p.json.targets.filter(isObject) : [];
          const queries = targets.map((t) => (typeof t.query === 'string' ? t.query.trim() : ''));
          if (queries.length === 0 || queries.some((q) => q === '')) problems.push(`"${p.title}": a target without a query`);
          if (targets.some((t) => t.rawQuery !== true)) problems.push(`"${p.title}": a target that is not raw InfluxQL`);
          const refIds = targets.map((t) => t.refId);
          if (new Set(refIds).size !== refIds.length) problems.push(`"${p.title}": duplicate refIds`);
        }
        expect(problems).toEqual([]);
      });

      it('queries only the measurements, tags and fields of the InfluxDB contract', () => {
        const problems: string[] = [];
        for (const q of queriesOf(d)) {
          const measurements = [...q.query.matchAll(/FROM "([^"]+)"/g)].map((m) => m[1] ?? '');
          const aliases = new Set([...q.query.matchAll(/AS "([^"]+)"/g)].map((m) => m[1] ?? ''));
          const allowed = new Set<string>(measurements);
          for (const m of measurements) {
            const c = CONTRACT[m];
            if (c === undefined) problems.push(`${q.title}: unknown measurement ${m}`);
            else for (const name of [...c.tags, ...c.fields]) allowed.add(name);
          }
          for (const [, id] of q.query.matchAll(/"([^"]+)"/g)) {
            if (id === undefined || allowed.has(id) || aliases.has(id)) continue;
            problems.push(`${q.title}: "${id}" is not a tag or field of ${measurements.join(', ')}`);
          }
          // Regex field selection is only for the per-band fields.
          for (const [, re] of q.query.matchAll(/\(\/([^/]+)\/\)/g)) {
            if (!measurements.every((m) => FIELD_REGEXES[m] === re)) problems.push(`${q.title}: regex field selection /${re ?? ''}/`);
          }
        }
        expect(problems).toEqual([]);
      });

      it('uses only variables Grafana defines or the dashboard declares, multi-value ones inside /^…$/ regexes', () => {
        const vars = variablesOf(d);
        const names = vars.map((v) => v.name);
        const problems: string[] = [];
        for (const q of queriesOf(d)) {
          const unknown = unsupportedVariables(q.query, names);
          if (unknown.length > 0) problems.push(`${q.title}: ${unknown.join(', ')}`);
          if (q.kind !== 'variable' && !q.query.includes('$timeFilter')) problems.push(`${q.title}: no $timeFilter`);
          for (const v of vars.filter((x) => x.multi || x.includeAll)) {
            const uses = q.query.split(`$${v.name}`).length - 1;
            const inRegex = q.query.split(`=~ /^$${v.name}$/`).length - 1;
            if (uses !== inRegex) problems.push(`${q.title}: $${v.name} outside =~ /^$${v.name}$/`);
          }
        }
        expect(problems).toEqual([]);
      });

      it('selects the columns its annotations show', () => {
        const annotations = isObject(d.json.annotations) && Array.isArray(d.json.annotations.list) ? d.json.annotations.list.filter(isObject) : [];
        for (const a of annotations) {
          const query = typeof a.query === 'string' ? a.query : '';
          const selected = /^SELECT (.*?) FROM /.exec(query)?.[1] ?? '';
          const columns = [...selected.matchAll(/"([^"]+)"/g)].map((m) => m[1]);
          const wanted = [a.textColumn, ...(typeof a.tagsColumn === 'string' ? a.tagsColumn.split(',') : [])].filter((c): c is string => typeof c === 'string');
          expect(wanted.length, String(a.name)).toBeGreaterThan(0);
          for (const c of wanted) expect(columns, `${String(a.name)}: ${c}`).toContain(c.trim());
        }
      });

      it('expands to InfluxQL with no variable left', () => {
        const vars = variablesOf(d);
        const values = new Map<string, VariableValue>(vars.map((v) => [v.name, v.type === 'textbox' ? { values: v.current } : { values: ['a.b', 'c'] }]));
        for (const q of queriesOf(d)) {
          const out = expandQuery(q, { range: { fromMs: 1_767_571_200_000, toMs: 1_767_657_600_000 }, variables: vars, values, datasourceMin: '10s' });
          expect(variablesUsed(out), `${q.title}: ${out}`).toEqual([]);
          expect(out).not.toMatch(/\[\[|\$\{/);
        }
      });
    });
  }
});

describe('provisioned alert rules (grafana/provisioning/alerting)', () => {
  const rules = loadAlertRules();

  it('query the provisioned datasource, with InfluxQL over the contract, and a condition that is one of their steps', () => {
    expect(rules.queries.length).toBeGreaterThanOrEqual(2);
    for (const q of rules.queries) {
      expect(q.datasourceUid, q.rule).toBe('meterflow-influxdb');
      expect(q.query, q.rule).toMatch(/^SELECT .* FROM "pipeline" WHERE .*\$timeFilter/);
      for (const [, id] of q.query.matchAll(/"([^"]+)"/g)) {
        const ok =
          id !== undefined &&
          ((CONTRACT.pipeline?.tags ?? []).includes(id) ||
            (CONTRACT.pipeline?.fields ?? []).includes(id) ||
            q.query.includes(`AS "${id}"`) ||
            id === 'pipeline');
        expect(ok, `${q.rule}: "${id}"`).toBe(true);
      }
    }
    for (const c of rules.conditions) expect(c.refIds, c.rule).toContain(c.condition);
    for (const e of rules.expressions) expect(['reduce', 'math', 'threshold'], `${e.rule} ${e.refId}`).toContain(e.type);
  });
});

describe('query expansion', () => {
  const d = dashboards.find((x) => x.uid === 'meterflow-meter');
  const vars = d === undefined ? [] : variablesOf(d);
  const range = { fromMs: 1_767_571_200_000, toMs: 1_767_830_400_000 }; // 3 days

  it.each([
    // [query, minInterval, timeFrom, values, expected]
    ['SELECT 1 FROM "x" WHERE $timeFilter', undefined, undefined, {}, 'SELECT 1 FROM "x" WHERE time >= 1767571200000ms and time <= 1767830400000ms'],
    ['GROUP BY time($__interval)', undefined, undefined, {}, 'GROUP BY time(5m)'],
    ['GROUP BY time($__interval)', '15m', undefined, {}, 'GROUP BY time(15m)'],
    ['$__interval_ms', '1h', undefined, {}, '3600000'],
    ['WHERE $timeFilter', undefined, '30d', {}, 'WHERE time >= 1765238400000ms and time <= 1767830400000ms'],
    ['"meter" =~ /^$meter$/', undefined, undefined, { meter: { values: ['M-1.2'] } }, '"meter" =~ /^M-1\\.2$/'],
    ['"feeder" =~ /^$feeder$/', undefined, undefined, { feeder: { values: ['F/1', 'F(2)'] } }, '"feeder" =~ /^(F\\/1|F\\(2\\))$/'],
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a Grafana variable, not a template literal
    ['"feeder" =~ /^${feeder}$/', undefined, undefined, { feeder: { all: true } }, '"feeder" =~ /^.*$/'],
    ["tz('$tz')", undefined, undefined, { tz: { values: ['Europe/Madrid'] } }, "tz('Europe/Madrid')"],
  ] as const)('%s (min %s, from %s)', (query, minInterval, timeFrom, values, expected) => {
    const q = {
      dashboard: 'x',
      kind: 'panel' as const,
      title: 't',
      refId: 'A',
      query,
      ...(minInterval ? { minInterval } : {}),
      ...(timeFrom ? { timeFrom } : {}),
    };
    const map = new Map<string, VariableValue>(Object.entries(values));
    expect(expandQuery(q, { range, variables: vars, values: map, datasourceMin: '10s' })).toBe(expected);
  });

  it('refuses a variable it does not know', () => {
    const q = { dashboard: 'x', kind: 'panel' as const, title: 't', refId: 'A', query: 'WHERE "x" = $nope' };
    expect(() => expandQuery(q, { range, variables: vars, values: new Map() })).toThrow('cannot expand $nope');
  });
});
