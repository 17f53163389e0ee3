/**
 * npm run bench — every benchmark in turn, each in its own process (so one's memory and JIT state never colour
 * another's), then one summary: each meterflow figure as a ratio of the raw limit measured in the same run, written
 * to bench/results/<timestamp>.json.
 *
 *   npm run bench                      full sizes (the defaults; the replay alone is 28.8 M readings)
 *   npm run bench -- --quick           a few minutes, for development
 *   npm run bench -- --skip durability,stream    leave benches out (ingest, stream, durability, pipeline)
 *   npm run bench -- --scaling [--quick]         only the scaling run (docs/scaling.md and docs/scaling.svg)
 *   npm run bench -- --replay-max-s 900          any other option goes to bench/pipeline.ts
 *
 * Each bench starts its own private redis-server / mosquitto / influxd (simulators/services.ts).
 */
import { readFileSync } from 'node:fs';
import { machineContext, runBenchChild, table, writeResult, type BenchRow } from './lib.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const scaling = argv.includes('--scaling');
const skipAt = argv.indexOf('--skip');
const skip = new Set(skipAt >= 0 ? (argv[skipAt + 1] ?? '').split(',') : []);
/** Options for bench/pipeline.ts: everything but run.ts's own --skip. */
const pipelineArgs = skipAt < 0 ? argv : argv.filter((_, i) => i !== skipAt && i !== skipAt + 1);

type Json = Record<string, unknown>;
const read = (file: string | undefined): Json | undefined => (file === undefined ? undefined : (JSON.parse(readFileSync(file, 'utf8')) as Json));
const n = (v: unknown): number => (typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN);

async function main(): Promise<void> {
  if (scaling) {
    process.stdout.write('\n=== bench/pipeline.ts --scaling ===\n');
    const r = await runBenchChild('pipeline.ts', pipelineArgs);
    process.exitCode = r.status === 0 ? 0 : 1;
    return;
  }
  const t0 = performance.now();
  const failed: string[] = [];
  const outputs: Record<string, Json | undefined> = {};
  const benches: Array<[string, string[], Record<string, string>]> = [
    ['ingest', [], quick ? { BENCH_SINGLE: '10000', BENCH_BATCHED: '50000' } : {}],
    ['stream', quick ? ['--meters', '2000', '--days', '1'] : ['--meters', '10000', '--days', '1'], {}],
    ['durability', [], quick ? { BENCH_DURABILITY_N: '10000' } : {}],
    ['pipeline', pipelineArgs, {}],
  ];
  const seconds: Record<string, number> = {};
  for (const [name, args, env] of benches) {
    if (skip.has(name)) continue;
    process.stdout.write(`\n=== bench/${name}.ts ${args.join(' ')} ===\n`);
    const t = performance.now();
    const r = await runBenchChild(`${name}.ts`, args, env);
    seconds[name] = Math.round((performance.now() - t) / 1000);
    if (r.status !== 0) {
      failed.push(name);
      process.stderr.write(`bench/${name}.ts failed (exit ${r.status})\n`);
    }
    outputs[name] = read(r.resultFile);
  }

  const summary: Json = {};
  // bench/ingest.ts: ingest → stream (one role, its own process) next to its own raw broker rate.
  const ingestRows = (outputs.ingest?.rows ?? []) as Json[];
  const ingestRow = (prefix: string): Json | undefined => ingestRows.find((r) => String(r.case).startsWith(prefix));
  summary.ingest_single_readings_per_s = n(ingestRow('single')?.['ingest→stream readings/s']);
  summary.ingest_single_raw_broker_readings_per_s = n(ingestRow('single')?.['raw broker readings/s']);
  summary.ingest_batched_readings_per_s = n(ingestRow('batched')?.['ingest→stream readings/s']);
  summary.ingest_batched_raw_broker_readings_per_s = n(ingestRow('batched')?.['raw broker readings/s']);
  summary.ingest_batched_case = ingestRow('batched')?.case ?? null;
  // bench/stream.ts: the stream worker alone on a backfilled fleet.
  const st = outputs.stream;
  summary.stream_domain_readings_per_s = n(st?.domainReadingsPerSec);
  summary.stream_worker_readings_per_s = n(st?.workerReadingsPerSec);
  summary.stream_bench_meters = n(st?.meters);
  summary.stream_bench_days = n(st?.days);
  summary.stream_bench_state_bytes_per_meter = n((st?.stateBytesPerMeter as Json | undefined)?.mean);
  // bench/pipeline.ts: raw limits, end to end, latency, state, replay.
  const pl = outputs.pipeline ?? {};
  for (const [k, v] of Object.entries(pl)) if (!['name', 'at', 'machine', 'phases', 'settings', 'quick'].includes(k)) summary[k] = v;

  const required = [
    'e2e_batched_readings_per_s',
    'e2e_single_readings_per_s',
    'raw_mqtt_msgs_per_s',
    'raw_influx_points_per_s',
    'p99_publish_to_event_ms',
    'state_bytes_per_meter',
    'replay_30d_10k_s',
  ];
  const top: Json = {};
  for (const k of required) top[k] = summary[k] ?? null;
  const machine = machineContext();
  const body = {
    ...top,
    ...Object.fromEntries(Object.entries(summary).filter(([k]) => !required.includes(k))),
    name: 'bench',
    at: new Date().toISOString(),
    quick,
    machine,
    benchSeconds: { ...seconds, total: Math.round((performance.now() - t0) / 1000) },
    failed,
    pipelineSettings: pl.settings ?? null,
    durability: outputs.durability?.rows ?? null,
    sources: Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, v === undefined ? null : (v.at ?? null)])),
  };

  // Each meterflow figure against the raw limits of the same run (a reading costs two InfluxDB points: `reading` and `interval`).
  const raw = {
    mqttBatched: n(summary.raw_mqtt_batched_readings_per_s),
    mqttSingle: n(summary.raw_mqtt_msgs_per_s),
    xaddBatched: n(summary.raw_xadd_batched_readings_per_s),
    xaddSingle: n(summary.raw_xadd_entries_per_s),
    influx: n(summary.raw_influx_points_per_s) / 2,
  };
  const ratio = (v: number, r: number): string => (Number.isFinite(v) && Number.isFinite(r) && r > 0 ? (v / r).toFixed(2) : '–');
  const row = (label: string, v: number, mqttRaw: number, xaddRaw: number, influxRaw: number, own?: number): BenchRow => ({
    case: label,
    'readings/s': Number.isFinite(v) ? Math.round(v) : '–',
    'vs raw MQTT': ratio(v, mqttRaw),
    'vs raw XADD': ratio(v, xaddRaw),
    'vs raw InfluxDB': ratio(v, influxRaw),
    'vs tightest raw': ratio(v, Math.min(...[mqttRaw, xaddRaw, influxRaw].filter(Number.isFinite))),
    ...(own !== undefined ? { 'vs own raw broker': ratio(v, own) } : {}),
  });
  const rows: BenchRow[] = [
    row('e2e, 100-reading batches (every role)', n(summary.e2e_batched_readings_per_s), raw.mqttBatched, raw.xaddBatched, raw.influx),
    row('e2e, single-reading messages (every role)', n(summary.e2e_single_readings_per_s), raw.mqttSingle, raw.xaddSingle, raw.influx),
    row(
      `replay ${summary.replay_days ?? '?'} d × ${summary.replay_meters ?? '?'} meters (every role)`,
      n(summary.replay_readings_per_s),
      raw.mqttBatched,
      raw.xaddBatched,
      raw.influx,
    ),
    row(
      'ingest→stream, single (bench/ingest)',
      n(summary.ingest_single_readings_per_s),
      raw.mqttSingle,
      raw.xaddSingle,
      NaN,
      n(summary.ingest_single_raw_broker_readings_per_s),
    ),
    row(
      `ingest→stream, ${String(summary.ingest_batched_case ?? 'batched')} (bench/ingest)`,
      n(summary.ingest_batched_readings_per_s),
      raw.mqttBatched,
      raw.xaddBatched,
      NaN,
      n(summary.ingest_batched_raw_broker_readings_per_s),
    ),
    row('stream worker alone (bench/stream)', n(summary.stream_worker_readings_per_s), NaN, NaN, raw.influx),
    row('stream domain only, 1 core (bench/stream)', n(summary.stream_domain_readings_per_s), NaN, NaN, raw.influx),
  ];
  const rawRows: BenchRow[] = [
    { case: 'MQTT broker → QoS 1 subscriber, single-reading msgs', 'per s': n(summary.raw_mqtt_msgs_per_s), unit: 'msgs (= readings)' },
    {
      case: 'MQTT broker → QoS 1 subscriber, 100-reading msgs',
      'per s': n(summary.raw_mqtt_batched_readings_per_s),
      unit: `readings (${n(summary.raw_mqtt_batched_msgs_per_s)} msgs)`,
    },
    { case: 'Redis XADD, 1-reading entries', 'per s': n(summary.raw_xadd_entries_per_s), unit: 'entries' },
    {
      case: `Redis XADD, a batch split by shard (~${summary.raw_xadd_readings_per_batched_entry ?? '?'} readings/entry)`,
      'per s': n(summary.raw_xadd_batched_readings_per_s),
      unit: `readings (${n(summary.raw_xadd_batched_entries_per_s)} entries)`,
    },
    { case: 'InfluxDB 1.x, reading + interval lines, batches of 5000', 'per s': n(summary.raw_influx_points_per_s), unit: 'points' },
  ];
  const ms = (k: string): string => (Number.isFinite(n(summary[k])) ? `${n(summary[k])} ms` : '–');
  const targets: BenchRow[] = [
    { case: 'e2e batched readings/s', measured: n(summary.e2e_batched_readings_per_s), target: '≥ 25,000' },
    { case: 'e2e single readings/s', measured: n(summary.e2e_single_readings_per_s), target: '≥ 10,000' },
    { case: `p99 publish→event at ${n(summary.achieved_readings_per_s)} readings/s`, measured: ms('p99_publish_to_event_ms'), target: '≤ 1 s' },
    { case: 'p99 publish→alert', measured: ms('p99_publish_to_alert_ms'), target: '–' },
    {
      case: `state bytes per meter (${summary.state_meters ?? '?'} meters, ${summary.state_days ?? '?'} d)`,
      measured: n(summary.state_bytes_per_meter),
      target: '≤ 2,048',
    },
    {
      case: `replay 30 d × 10k meters${summary.replay_extrapolated === true ? ' (extrapolated)' : ''}`,
      measured: Number.isFinite(n(summary.replay_30d_10k_s)) ? `${(n(summary.replay_30d_10k_s) / 60).toFixed(1)} min` : '–',
      target: '≤ 15 min',
    },
  ];
  process.stdout.write(
    `\n=== summary (${machine.cores} cores, node ${machine.node}, ${machine.gitCommit?.slice(0, 10) ?? '?'}${machine.gitDirty.length ? '+dirty' : ''}${quick ? ', QUICK sizes' : ''}) ===\n`,
  );
  process.stdout.write(`\nraw limits (same run)\n${table(rawRows)}\n`);
  process.stdout.write(`\nmeterflow as a ratio of the raw limits (InfluxDB: points/s ÷ 2 per reading)\n${table(rows)}\n`);
  process.stdout.write(`\nissue 13 targets\n${table(targets)}\n`);
  if (failed.length > 0) process.stdout.write(`\nFAILED: ${failed.join(', ')}\n`);
  writeResult('', body);
  process.exitCode = failed.length ? 1 : 0;
}

await main();
