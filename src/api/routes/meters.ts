import { Type } from 'typebox';
import { METER_ID_PATTERN } from '../../contracts/reading.js';
import { qstr, rows, type InfluxSeries } from '../../shared/influx.js';
import type { RoutePlugin } from '../app.js';
import { ErrorBody } from '../../contracts/http.js';

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const iso = (v: unknown): string => new Date(typeof v === 'number' ? v : 0).toISOString();
const first = (s: InfluxSeries[]): Array<Record<string, unknown>> => (s[0] ? rows(s[0]) : []);

const Interval = Type.Object({
  start: Type.String(),
  wh: Type.Union([Type.Number(), Type.Null()]),
  demandW: Type.Union([Type.Number(), Type.Null()]),
  estimated: Type.Boolean(),
  band: Type.Optional(Type.String()),
});

/** Meter state for operators: registry, last reading, baseline, recent intervals and anomalies (from InfluxDB). */
export const meterRoutes: RoutePlugin = async (app, deps) => {
  app.get(
    '/api/v1/meters/:id',
    {
      preHandler: deps.auth(),
      schema: {
        tags: ['meters'],
        params: Type.Object({ id: Type.String({ pattern: METER_ID_PATTERN }) }),
        querystring: Type.Object({ intervals: Type.Integer({ minimum: 1, maximum: 2976, default: 96 }) }),
        response: {
          200: Type.Object({
            meterId: Type.String(),
            registered: Type.Boolean(),
            customer: Type.Record(Type.String(), Type.Unknown()),
            lastReading: Type.Union([
              Type.Null(),
              Type.Object({
                ts: Type.String(),
                importWh: Type.Union([Type.Number(), Type.Null()]),
                exportWh: Type.Union([Type.Number(), Type.Null()]),
                powerW: Type.Union([Type.Number(), Type.Null()]),
                voltageV: Type.Union([Type.Number(), Type.Null()]),
              }),
            ]),
            baseline: Type.Array(
              Type.Object({ slot: Type.String(), expectedWh: Type.Union([Type.Number(), Type.Null()]), spreadWh: Type.Union([Type.Number(), Type.Null()]) }),
            ),
            intervals: Type.Array(Interval),
            anomalies: Type.Array(
              Type.Object({
                ts: Type.String(),
                type: Type.String(),
                severity: Type.String(),
                value: Type.Union([Type.Number(), Type.Null()]),
                expected: Type.Union([Type.Number(), Type.Null()]),
                reason: Type.String(),
              }),
            ),
          }),
          400: ErrorBody,
        },
      },
    },
    async (req) => {
      const id = req.params.id;
      const m = qstr(id);
      const info = await deps.registry.getMeter(id);
      const { registered, ...customer } = info;
      const [last, base, ivs, anoms] = await Promise.all([
        deps.influx.query(
          `SELECT last(import_wh) AS import_wh, last(export_wh) AS export_wh, last(power_w) AS power_w, last(voltage_v) AS voltage_v FROM reading WHERE meter = ${m}`,
        ),
        deps.influx.query(`SELECT expected_wh, spread_wh FROM baseline WHERE meter = ${m} ORDER BY time DESC LIMIT 168`),
        deps.influx.query(`SELECT wh, demand_w, estimated, band FROM interval WHERE meter = ${m} ORDER BY time DESC LIMIT ${req.query.intervals}`),
        deps.influx.query(`SELECT value, expected, reason, type, severity FROM anomaly WHERE meter = ${m} ORDER BY time DESC LIMIT 50`),
      ]);
      const lr = first(last)[0];
      return {
        meterId: id,
        registered,
        customer,
        lastReading: lr
          ? { ts: iso(lr.time), importWh: num(lr.import_wh), exportWh: num(lr.export_wh), powerW: num(lr.power_w), voltageV: num(lr.voltage_v) }
          : null,
        baseline: first(base).map((r) => ({ slot: iso(r.time), expectedWh: num(r.expected_wh), spreadWh: num(r.spread_wh) })),
        intervals: first(ivs)
          .reverse()
          .map((r) => ({
            start: iso(r.time),
            wh: num(r.wh),
            demandW: num(r.demand_w),
            estimated: r.estimated === true,
            ...(typeof r.band === 'string' ? { band: r.band } : {}),
          })),
        anomalies: first(anoms).map((r) => ({
          ts: iso(r.time),
          type: String(r.type ?? ''),
          severity: String(r.severity ?? ''),
          value: num(r.value),
          expected: num(r.expected),
          reason: String(r.reason ?? ''),
        })),
      };
    },
  );
};
