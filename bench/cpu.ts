import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

/**
 * CPU time (user + system) of the processes a bench runs, so a figure per reading can be given per core: on a shared
 * machine wall-clock readings/s fall with everyone else's load, CPU seconds per reading much less.
 */

let ticks: number | undefined;
/** Clock ticks per second of /proc/<pid>/stat (getconf CLK_TCK, 100 on Linux). */
function clockTicks(): number {
  if (ticks === undefined) {
    const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    const n = Number(out.stdout?.trim());
    ticks = Number.isInteger(n) && n > 0 ? n : 100;
  }
  return ticks;
}

/** CPU seconds used so far by process `pid` (every thread), from /proc; undefined off Linux or once it is gone. */
export function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: count fields after the last ')'. utime and stime are
    // fields 14 and 15 of the line, 12th and 13th after the name.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / clockTicks() : undefined;
  } catch {
    return undefined;
  }
}

/** The process whose command line contains `needle` (e.g. a private service's data dir), if exactly one does. */
export function pidByCommandLine(needle: string): number | undefined {
  let found: number[] = [];
  try {
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle)) found.push(Number(d));
      } catch {
        // gone meanwhile
      }
    }
  } catch {
    found = [];
  }
  return found.length === 1 ? found[0] : undefined;
}

/** Redis' own CPU seconds (INFO cpu, the server process; forks for AOF rewrites are not counted). */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (k: string): number => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  return field('used_cpu_user') + field('used_cpu_sys');
}

/** Microseconds of CPU per reading between two samples, per component (a component missing from either is left out). */
export function cpuMicrosPerReading(before: Record<string, number>, after: Record<string, number>, readings: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, a] of Object.entries(after)) {
    const b = before[k];
    if (b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || readings <= 0) continue;
    out[k] = Math.round(((a - b) * 1e6) / readings);
  }
  return out;
}
