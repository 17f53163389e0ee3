import { IANAZone } from 'luxon';
import { DAY_MS, localParts, MINUTE_MS, offsetMinutes, type LocalParts } from './local-time.js';
import { DAY_KINDS, type DayKind, type TariffConfig, type TariffsConfig, WEEKDAY_NAMES } from '../contracts/config-tariffs.js';

/**
 * Time-of-use tariffs: which band (peak, flat, valley, …) an instant falls in, in the tariff's local time.
 * Pure: compiled once from config, then `bandAt` / `bandSegments` are plain arithmetic plus a cached zone offset.
 */

interface Period {
  /** Minutes after local midnight. */
  fromMin: number;
  band: string;
}

/** A compiled tariff: ready for `bandAt`. */
export interface Tariff {
  readonly name: string;
  readonly timezone: string;
  readonly bands: readonly string[];
  /** schedule[(month-1)*3 + dayKindIndex] → periods sorted by fromMin, first at 0. */
  readonly schedule: readonly (readonly Period[])[];
  /** Local dates as y*10000+m*100+d. */
  readonly holidays: ReadonlySet<number>;
  readonly workdays: ReadonlySet<number>;
  /** Weekdays (0 = Monday … 6 = Sunday, as localParts counts them) that are weekend. */
  readonly weekend: ReadonlySet<number>;
  /** Minutes after local midnight where the band may change (0 included: the day kind changes at midnight). */
  readonly edges: readonly number[];
}

export interface Tariffs {
  readonly default: Tariff;
  readonly byName: ReadonlyMap<string, Tariff>;
  /** Every band of every tariff, first-seen order: stable CSV columns. */
  readonly allBands: readonly string[];
}

export class TariffConfigError extends Error {
  override name = 'TariffConfigError';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`tariffs.${path}: ${message}`);
  }
}

const BAND_RE = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const HHMM_RE = /^([01]\d|2[0-3]):([0-5]\d)$/;
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;

function dateKey(date: string, path: string): number {
  const m = DATE_RE.exec(date);
  if (!m) throw new TariffConfigError(path, `expected a date YYYY-MM-DD, got "${date}"`);
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const check = new Date(Date.UTC(y, mo - 1, d));
  if (check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== d) throw new TariffConfigError(path, `no such date "${date}"`);
  return y * 10000 + mo * 100 + d;
}

function compileTariff(name: string, cfg: TariffConfig, all: TariffsConfig, fallbackTz: string): Tariff {
  const at = `tariffs.${name}`;
  const timezone = cfg.timezone ?? all.timezone ?? fallbackTz;
  if (!IANAZone.isValidZone(timezone)) throw new TariffConfigError(`${at}.timezone`, `unknown IANA time zone "${timezone}"`);
  if (cfg.bands.length === 0) throw new TariffConfigError(`${at}.bands`, 'at least one band');
  const bands = new Set<string>();
  cfg.bands.forEach((b, i) => {
    if (!BAND_RE.test(b)) throw new TariffConfigError(`${at}.bands.${i}`, `band names are a letter then letters, digits or _, got "${b}"`);
    if (bands.has(b)) throw new TariffConfigError(`${at}.bands.${i}`, `duplicate band "${b}"`);
    bands.add(b);
  });

  let holidays = new Set<number>();
  let workdays = new Set<number>();
  if (cfg.calendar !== undefined) {
    const cal = all.calendars[cfg.calendar];
    if (cal === undefined) throw new TariffConfigError(`${at}.calendar`, `no calendar "${cfg.calendar}" in calendars`);
    holidays = new Set(cal.holidays.map((d, i) => dateKey(d, `calendars.${cfg.calendar}.holidays.${i}`)));
    workdays = new Set((cal.workdays ?? []).map((d, i) => dateKey(d, `calendars.${cfg.calendar}.workdays.${i}`)));
  }
  const weekend = new Set((cfg.weekend ?? ['sat', 'sun']).map((w) => WEEKDAY_NAMES.indexOf(w)));

  const edges = new Set<number>([0]);
  const rules = cfg.rules.map((rule, ri) => {
    const rat = `${at}.rules.${ri}`;
    if (rule.periods.length === 0) throw new TariffConfigError(`${rat}.periods`, 'at least one period');
    const periods: Period[] = rule.periods.map((p, pi) => {
      const m = HHMM_RE.exec(p.from);
      if (!m) throw new TariffConfigError(`${rat}.periods.${pi}.from`, `expected local time HH:MM, got "${p.from}"`);
      if (!bands.has(p.band)) throw new TariffConfigError(`${rat}.periods.${pi}.band`, `"${p.band}" is not in bands`);
      return { fromMin: Number(m[1]) * 60 + Number(m[2]), band: p.band };
    });
    if (periods[0]?.fromMin !== 0) throw new TariffConfigError(`${rat}.periods.0.from`, 'the first period starts at 00:00');
    for (let i = 1; i < periods.length; i++) {
      const prev = periods[i - 1];
      const cur = periods[i];
      if (prev === undefined || cur === undefined || cur.fromMin <= prev.fromMin) {
        throw new TariffConfigError(`${rat}.periods.${i}.from`, 'periods are in increasing time order');
      }
    }
    for (const p of periods) edges.add(p.fromMin);
    const months = rule.months ?? [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    months.forEach((mo, i) => {
      if (!Number.isInteger(mo) || mo < 1 || mo > 12) throw new TariffConfigError(`${rat}.months.${i}`, `expected a month 1–12, got ${mo}`);
    });
    if (rule.days.length === 0) throw new TariffConfigError(`${rat}.days`, `at least one of ${DAY_KINDS.join(', ')}`);
    return { months: new Set(months), days: new Set(rule.days), periods };
  });

  const schedule: Period[][] = [];
  for (let month = 1; month <= 12; month++) {
    for (const kind of DAY_KINDS) {
      const rule = rules.find((r) => r.months.has(month) && r.days.has(kind));
      if (rule === undefined) throw new TariffConfigError(`${at}.rules`, `no rule covers month ${month} on a ${kind}`);
      schedule.push(rule.periods);
    }
  }
  return {
    name,
    timezone,
    bands: [...bands],
    schedule,
    holidays,
    workdays,
    weekend,
    edges: [...edges].sort((a, b) => a - b),
  };
}

/**
 * Checks and compiles the tariffs section. `fallbackTimezone` is the process time zone (AppConfig.timezone),
 * used by tariffs that name none. Throws TariffConfigError naming the bad key.
 */
export function compileTariffs(cfg: TariffsConfig, fallbackTimezone = 'UTC'): Tariffs {
  const byName = new Map<string, Tariff>();
  for (const [name, t] of Object.entries(cfg.tariffs)) byName.set(name, compileTariff(name, t, cfg, fallbackTimezone));
  const def = byName.get(cfg.default);
  if (def === undefined) throw new TariffConfigError('default', `no tariff named "${cfg.default}"`);
  const allBands: string[] = [];
  for (const t of byName.values()) for (const b of t.bands) if (!allBands.includes(b)) allBands.push(b);
  return { default: def, byName, allBands };
}

/** The tariff named in the registry, or the default one for names the config does not know. */
export function tariffFor(tariffs: Tariffs, name: string | undefined): Tariff {
  return (name === undefined ? undefined : tariffs.byName.get(name)) ?? tariffs.default;
}

/** Holiday beats weekend; a listed workday is a weekday even on a weekend. */
export function dayKindOf(tariff: Tariff, dateKeyValue: number, weekday: number): DayKind {
  if (tariff.holidays.has(dateKeyValue)) return 'holiday';
  if (tariff.weekend.has(weekday) && !tariff.workdays.has(dateKeyValue)) return 'weekend';
  return 'weekday';
}

function bandOfParts(tariff: Tariff, p: LocalParts): string {
  const kind = dayKindOf(tariff, p.dateKey, p.weekday);
  const periods = tariff.schedule[(p.month - 1) * 3 + DAY_KINDS.indexOf(kind)] ?? [];
  const minute = Math.floor(p.msOfDay / MINUTE_MS);
  let band = periods[0]?.band ?? tariff.bands[0] ?? '';
  for (const period of periods) {
    if (period.fromMin > minute) break;
    band = period.band;
  }
  return band;
}

/** The time-of-use band in force at instant `tsMs` (epoch ms), in the tariff's local time. */
export function bandAt(tariff: Tariff, tsMs: number): string {
  return bandOfParts(tariff, localParts(tariff.timezone, tsMs));
}

export interface BandSegment {
  band: string;
  fromMs: number;
  toMs: number;
}

/** First instant in (lo, hi] whose zone offset differs from the one at lo (hi must differ). */
function findTransition(zone: string, lo: number, hi: number): number {
  const base = offsetMinutes(zone, lo);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (offsetMinutes(zone, mid) === base) lo = mid;
    else hi = mid;
  }
  return hi;
}

function pushSegment(out: BandSegment[], band: string, fromMs: number, toMs: number): void {
  const last = out[out.length - 1];
  if (last !== undefined && last.band === band && last.toMs === fromMs) last.toMs = toMs;
  else out.push({ band, fromMs, toMs });
}

/** Segments of [fromMs, toMs) with a constant zone offset and at most a day long. */
function segmentsConstantOffset(tariff: Tariff, fromMs: number, toMs: number, out: BandSegment[]): void {
  const start = localParts(tariff.timezone, fromMs);
  const len = toMs - fromMs;
  const cuts: number[] = [];
  for (const edge of tariff.edges) {
    for (const day of [0, DAY_MS]) {
      const at = edge * MINUTE_MS + day - start.msOfDay;
      if (at > 0 && at < len) cuts.push(fromMs + at);
    }
  }
  cuts.sort((a, b) => a - b);
  let from = fromMs;
  for (const cut of [...cuts, toMs]) {
    if (cut > from) pushSegment(out, bandAt(tariff, from), from, cut);
    from = cut;
  }
}

/**
 * [fromMs, toMs) cut where the band changes: at the tariff's local period edges, at local midnight
 * (weekday → weekend → holiday) and across DST transitions (edges stay at local wall-clock times).
 */
export function bandSegments(tariff: Tariff, fromMs: number, toMs: number): BandSegment[] {
  const out: BandSegment[] = [];
  const zone = tariff.timezone;
  let from = fromMs;
  while (from < toMs) {
    // Chunks of at most 12 h: an offset change within one is found by bisection (transitions are months apart).
    let to = Math.min(toMs, from + DAY_MS / 2);
    if (offsetMinutes(zone, to - 1) !== offsetMinutes(zone, from)) to = findTransition(zone, from, to - 1);
    segmentsConstantOffset(tariff, from, to, out);
    from = to;
  }
  return out;
}

/**
 * The one band in force over [fromMs, toMs) when no band edge, local midnight or offset change falls inside
 * (the common case for a quarter-hour); undefined otherwise (use bandSegments).
 */
export function singleBand(tariff: Tariff, fromMs: number, toMs: number): string | undefined {
  const len = toMs - fromMs;
  if (len <= 0 || len > DAY_MS / 2) return undefined;
  const zone = tariff.timezone;
  if (offsetMinutes(zone, toMs - 1) !== offsetMinutes(zone, fromMs)) return undefined;
  const p = localParts(zone, fromMs);
  const end = p.msOfDay + len;
  for (const edge of tariff.edges) {
    const at = edge * MINUTE_MS;
    if ((at > p.msOfDay && at < end) || (at + DAY_MS > p.msOfDay && at + DAY_MS < end)) return undefined;
  }
  return bandOfParts(tariff, p);
}
