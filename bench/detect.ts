/**
 * npm run bench:detect — detection quality offline: a scenario through the stream worker's domain code, scored.
 *
 *   tsx bench/detect.ts [--scenario simulators/scenarios/ci.yaml] [--meters 320] [--days 30] [--seed N] [--tolerance-hours 12] [--details]
 *   tsx bench/detect.ts --scenario simulators/scenarios/realistic.yaml      # its own meters and days unless given
 *   tsx bench/detect.ts --scenario simulators/scenarios/realistic.yaml --reference   # also the issue's median/MAD yardstick
 *
 * The simulator engine generates the fleet's MQTT messages in publish order; each is parsed by the ingest's own
 * parser and appended, as the ingest does, as one entry on its meter's shard (STREAM_SHARDS shards); each shard is
 * a ShardWork, the stream worker's in-memory core (VEE, baselines, detectors, silent sweep by watermark). No Redis,
 * MQTT or InfluxDB. Transport faults are delivered as the engine produces them: duplicates and out-of-order reads
 * reach the domain (the ingest's Redis dedup is the one step left out: the domain drops repeats itself), malformed
 * messages are rejected by the parser. The anomaly events are scored like the quality gate's events report
 * (episodesFromEvents + score); the interval marks (`out.marks`) interval by interval and with the tolerance metric
 * (scoreIntervals); --details lists the misses and false positives. Domain throughput is the readings per second
 * of ShardWork.process alone: only the process calls are timed, not the simulator's generation nor the parsing.
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { DetectionConfig } from '../src/contracts/config-detection.js';
import { IngestConfig } from '../src/contracts/config-ingest.js';
import type { MeterEvent, Reading } from '../src/contracts/reading.js';
import { compileSettings } from '../src/domain/stream-settings.js';
import { shardOf } from '../src/domain/shard.js';
import { parseLimits, parseMessage, parseTopic, type ParseLimits } from '../src/ingest/parse.js';
import { loadSection } from '../src/shared/config.js';
import { ShardWork, type MeterRecord } from '../src/stream/shard-work.js';
import { Simulation } from '../simulators/engine.js';
import { generateFleet } from '../simulators/fleet.js';
import { loadScenario } from '../simulators/scenario.js';
import { episodesFromEvents, formatReport, score, type ScoredEvent } from '../simulators/score.js';
import { formatIntervalReport, scoreIntervals, type MarkInput } from '../simulators/score-intervals.js';
import { ReferenceDetector } from '../simulators/reference-detector.js';

const { values: args } = parseArgs({
  options: {
    scenario: { type: 'string', default: fileURLToPath(new URL('../simulators/scenarios/ci.yaml', import.meta.url)) },
    meters: { type: 'string' },
    days: { type: 'string' },
    'tolerance-hours': { type: 'string', default: '12' },
    seed: { type: 'string' },
    shards: { type: 'string', default: '16' },
    details: { type: 'boolean', default: false },
    reference: { type: 'boolean', default: false },
  },
});

// ci.yaml keeps its historical bench size (320 meters x 30 days); other scenarios run as written unless told.
const isCi = args.scenario.endsWith('/ci.yaml') || args.scenario === 'ci.yaml';
const metersArg = args.meters ?? (isCi ? '320' : undefined);
const daysArg = args.days ?? (isCi ? '30' : undefined);
const scenario = loadScenario(args.scenario, {
  ...(metersArg === undefined ? {} : { meters: Number(metersArg) }),
  ...(daysArg === undefined ? {} : { to: `+${Number(daysArg)}d` }),
  ...(args.seed === undefined ? {} : { seed: args.seed }),
});
const toleranceHours = Number(args['tolerance-hours']);
if (!Number.isFinite(toleranceHours) || toleranceHours < 0) throw new Error(`--tolerance-hours: expected hours, got "${args['tolerance-hours']}"`);
const shards = Number(args.shards);
const det = loadSection('detection', DetectionConfig);
const ing = loadSection('ingest', IngestConfig);
const limits: ParseLimits = parseLimits(ing);
const settings = compileSettings(det, scenario.timezone);

const fleet = generateFleet(scenario);
const sim = new Simulation(fleet, scenario);
const records = new Map<string, MeterRecord>(fleet.customers.map((c) => [c.meterId, c]));
const meterOf = (id: string): MeterRecord => {
  const rec = records.get(id);
  if (rec === undefined) throw new Error(`meter ${id} is not in the fleet`);
  return rec;
};

const works = new Map<number, ShardWork>();
const work = (shard: number): ShardWork => {
  let w = works.get(shard);
  if (w === undefined) {
    w = new ShardWork(shard, {
      settings,
      watermarkLatenessMs: det.watermark.latenessMinutes * 60_000,
      maxFutureMs: det.intervals.maxFutureMinutes * 60_000,
      aggMs: det.feederOverload.intervalMinutes * 60_000,
      band: () => 'flat',
      dayZone: () => settings.zone,
    });
    works.set(shard, w);
  }
  return w;
};

const events: ScoredEvent[] = [];
const marks: MarkInput[] = [];
/** Time inside ShardWork.process only, ms. */
let processMs = 0;
/** --details: per meter, the lowest share of expected import its drop window reached after warm-up. */
const lowestShare = new Map<string, { share: number; ts: number }>();
const warmFrom = scenario.fromMs + det.baseline.warmupDays * 86_400_000;
const reference = args.reference ? new ReferenceDetector(scenario.timezone) : undefined;
const intervalMsOf = new Map(fleet.meters.map((m) => [m.meterId, m.intervalMinutes * 60_000]));
let entrySeq = 0;
let readings = 0;
const t0 = performance.now();
for (const msg of sim.messages()) {
  const topic = parseTopic(msg.topic);
  if (topic === undefined) continue;
  // Ingest time = simulated publish time: the future-timestamp checks see what a live ingest would.
  const parsed = parseMessage(topic, Buffer.from(msg.payload), msg.at, limits);
  const byShard = new Map<number, { readings: Reading[]; events: MeterEvent[] }>();
  const slot = (meterId: string) => {
    const s = shardOf(meterId, shards);
    let e = byShard.get(s);
    if (e === undefined) {
      e = { readings: [], events: [] };
      byShard.set(s, e);
    }
    return e;
  };
  for (const r of parsed.readings) slot(r.meterId).readings.push(r);
  if (reference) for (const r of parsed.readings) reference.read(r.meterId, r.ts, r.importWh, intervalMsOf.get(r.meterId) ?? 900_000);
  for (const e of parsed.events) slot(e.meterId).events.push(e);
  for (const [s, e] of byShard) {
    entrySeq++;
    readings += e.readings.length;
    const w = work(s);
    const p0 = performance.now();
    const out = w.process([{ id: `${entrySeq}-0`, readings: e.readings, events: e.events, rx: msg.at, malformed: [] }], meterOf);
    processMs += performance.now() - p0;
    for (const ev of out.events) events.push({ type: ev.type, subject: ev.subject, ts: ev.ts, status: ev.status });
    for (const m of out.marks) marks.push({ meterId: m.meterId, start: m.start, end: m.end, type: m.type });
    if (args.details && msg.ts >= warmFrom) {
      for (const r of e.readings) {
        const d = w.states.get(r.meterId)?.det;
        if (d === undefined || d.dropExpWh < det.drop.minExpectedWh) continue;
        const share = d.dropWh / d.dropExpWh;
        if (share < (lowestShare.get(r.meterId)?.share ?? Infinity)) lowestShare.set(r.meterId, { share, ts: r.ts });
      }
    }
  }
}
const seconds = (performance.now() - t0) / 1000;

const truth = sim.plan.truth;
const report = score({ truth, alerts: episodesFromEvents(events), source: 'events' });
const days = Math.round((scenario.toMs - scenario.fromMs) / 86_400_000);
console.log(`${scenario.name}: ${fleet.meters.length} meters x ${days} days, seed ${scenario.seed}; ${readings} readings in ${seconds.toFixed(1)} s`);
console.log(
  `domain throughput: ${Math.round(readings / (processMs / 1000))} readings/s (ShardWork.process only: ${(processMs / 1000).toFixed(1)} s of ${seconds.toFixed(1)} s)`,
);
console.log(formatReport(report));
console.log('');
const intervalOpts = { toleranceMs: toleranceHours * 3_600_000, defaultIntervalMinutes: 15 };
console.log(formatIntervalReport(scoreIntervals(truth, marks, intervalOpts)));
if (reference) {
  console.log('\nreference (per slot of the week: median and MAD of the last 8 weeks, flag beyond 8 MADs)');
  console.log(formatIntervalReport(scoreIntervals(truth, reference.marks, intervalOpts)).split('\n\n')[0]);
}

if (args.details) {
  const iso = (ms: number): string => new Date(ms).toISOString().slice(0, 16);
  const describe = (meterId: string): string => {
    const m = fleet.meters.find((x) => x.meterId === meterId);
    const inj = truth.filter((t) => t.meters.includes(meterId)).map((t) => `${t.type}/${t.magnitude} ${iso(t.startMs)}..${iso(t.endMs)}`);
    return m === undefined
      ? meterId
      : `${meterId} ${m.class} ${m.profile} ${((m.meanW * 24) / 1000).toFixed(1)} kWh/d pv=${m.pvKwp} ${m.intervalMinutes}m [${inj.join('; ')}]`;
  };
  console.log('\nmissed:');
  for (const m of report.missed) {
    const t = truth.find((x) => x.id === m.id);
    const firsts = events.filter((e) => e.subject === m.subject && e.type === m.type && e.status === 'firing').map((e) => iso(e.ts));
    console.log(
      `  ${m.id} ${m.type}/${m.magnitude} ${t ? `${iso(t.startMs)}..${iso(t.endMs)} ${JSON.stringify(t.params)}` : ''} fired: ${firsts.slice(0, 3).join(', ') || 'never'}\n    ${describe(m.subject)}`,
    );
  }
  console.log('\nfalse positives:');
  for (const f of report.falsePositives) console.log(`  ${f.type} ${iso(f.firstSeen)} ${describe(f.subject)}`);
  const dropLike = new Set(
    truth.filter((t) => t.kind === 'anomaly' && ['drop', 'flatline', 'reverseFlow', 'outage'].includes(t.type)).flatMap((t) => t.meters),
  );
  const margins = [...lowestShare]
    .filter(([id]) => !dropLike.has(id))
    .sort((a, b) => a[1].share - b[1].share)
    .slice(0, 5);
  console.log(`\nlowest drop-window share on meters with no drop-like injection (fires below ${det.drop.ratio}):`);
  for (const [id, m] of margins) console.log(`  ${m.share.toFixed(3)} at ${iso(m.ts)} ${describe(id)}`);
  console.log('\ndelays (clear, drop and flatline):');
  for (const t of truth.filter((x) => (x.type === 'drop' || x.type === 'flatline') && x.kind === 'anomaly')) {
    const first = events.find((e) => e.subject === t.subject && e.type === t.type && e.status === 'firing' && e.ts >= t.startMs);
    console.log(
      `  ${t.id} ${t.type}/${t.magnitude} ${iso(t.startMs)}..${iso(t.endMs)} ${JSON.stringify(t.params)} first firing ${first ? `${iso(first.ts)} (+${((first.ts - t.startMs) / 3_600_000).toFixed(1)} h)` : '-'}`,
    );
  }
}
