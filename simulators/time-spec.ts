/** Durations (`15m`, `6h`, `14d`) and time points (ISO-8601, `now`, `-2d`, `+6w`) as scenarios and flags write them. */

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const DURATION_RE = /^(\d+(?:\.\d+)?)(s|m|h|d|w)$/;
/** A date, or a date-time with an explicit zone: a bare local time would depend on the machine's zone. */
const ISO_RE = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:?\d{2}))?$/;

export class TimeSpecError extends Error {
  override name = 'TimeSpecError';
}

/** `15m` → 900000. */
export function parseDuration(spec: string): number {
  const m = DURATION_RE.exec(spec.trim());
  const unit = m?.[2] === undefined ? undefined : UNIT_MS[m[2]];
  if (m === null || unit === undefined) {
    throw new TimeSpecError(`"${spec}" is not a duration such as 90s, 15m, 6h, 14d or 2w`);
  }
  return Math.round(Number(m[1]) * unit);
}

/**
 * A time point: ISO-8601 (date, or date-time with Z or an offset), `now`, `-<duration>` (before now)
 * or `+<duration>` (after `base`, e.g. a scenario's end relative to its start).
 */
export function resolveTimePoint(spec: string, ctx: { now: number; base?: number }): number {
  const s = spec.trim();
  if (s === 'now') return ctx.now;
  if (s.startsWith('-')) return ctx.now - parseDuration(s.slice(1));
  if (s.startsWith('+')) {
    if (ctx.base === undefined) throw new TimeSpecError(`"${spec}" is relative to a start that is not known here`);
    return ctx.base + parseDuration(s.slice(1));
  }
  if (!ISO_RE.test(s)) {
    throw new TimeSpecError(`"${spec}" is not a time: use ISO-8601 with a zone (2026-01-05T00:00:00Z), now, -2d or +6w`);
  }
  const ms = Date.parse(s);
  if (!Number.isFinite(ms)) throw new TimeSpecError(`"${spec}" is not a valid date`);
  return ms;
}

/** ISO-8601 UTC without milliseconds when they are zero, as meters send it. */
export function isoSeconds(ms: number): string {
  const iso = new Date(ms).toISOString();
  return iso.endsWith('.000Z') ? `${iso.slice(0, -5)}Z` : iso;
}
