import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/pipeline.js';

const ENV = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', INFLUX_URL: 'http://127.0.0.1:1', API_PORT: '0', LOG_LEVEL: 'info' };

/** Runs `meterflow demo` with `args`; each stdout/stderr line with the seconds since the start at which it arrived. */
async function runDemo(
  args: string[],
  opts: { interruptAfterMs?: number } = {},
): Promise<{ code: number | null; out: string; lines: Array<{ at: number; line: string }> }> {
  const started = Date.now();
  const child = spawn(process.execPath, ['bin/meterflow.js', 'demo', ...args], { cwd: REPO, env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let partial = '';
  const lines: Array<{ at: number; line: string }> = [];
  const take = (b: Buffer): void => {
    out += b.toString();
    const parts = (partial + b.toString()).split('\n');
    partial = parts.pop() ?? '';
    const at = (Date.now() - started) / 1000;
    for (const line of parts) lines.push({ at, line });
  };
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  const timer = opts.interruptAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGINT'), opts.interruptAfterMs);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, out, lines };
}

/** The main job: `meterflow demo` brings its services up, runs every role and shows live progress, then stops cleanly. */
describe('meterflow demo', () => {
  it('runs the simulated fleet through every role and stops cleanly', async () => {
    const { code, out } = await runDemo(['--speed', '1800', '--duration', '50']);
    expect(code, out.slice(-3000)).toBe(0);
    expect(out).toContain('stopped cleanly');
    // The last status block: readings went all the way through ingest and the stream worker.
    const accepted = [...out.matchAll(/accepted ([\d,]+)/g)].map((m) => Number((m[1] ?? '0').replace(/,/g, '')));
    const processed = [...out.matchAll(/processed ([\d,]+) readings/g)].map((m) => Number((m[1] ?? '0').replace(/,/g, '')));
    expect(Math.max(...accepted), out.slice(-3000)).toBeGreaterThan(5000);
    expect(Math.max(...processed), out.slice(-3000)).toBeGreaterThan(5000);
    expect(out).toMatch(/anomalies\s+\S+ \d/);
    expect(out).toMatch(/http:\/\/127\.0\.0\.1:\d+\/docs/);
  }, 240_000);

  it('shows anomalies of several types, an outage and its restoration within its first minute (default speed), and stops on Ctrl-C', async () => {
    const { code, out, lines } = await runDemo([], { interruptAfterMs: 65_000 });
    expect(code, out.slice(-3000)).toBe(0);
    expect(out).toContain('stopped cleanly');
    const first = (test: (line: string) => boolean): number | undefined => lines.find((l) => test(l.line))?.at;
    /** Types on the "alerts by type" line, outage-related ones aside. */
    const types = (line: string): string[] =>
      [...(/^alerts by type\s+(.*)$/.exec(line)?.[1] ?? '').matchAll(/(\w+) \d+/g)]
        .map((m) => m[1] ?? '')
        .filter((t) => !['outage', 'lastGasp', 'powerRestored'].includes(t));
    const seen = {
      consoleUrl: first((l) => /http:\/\/127\.0\.0\.1:\d+\/console\//.test(l)),
      firstAnomaly: first((l) => types(l).length >= 1),
      threeTypes: first((l) => types(l).length >= 3),
      outage: first((l) => /^alerts by type .*outage \S+ \(\d+ meters\) open/.test(l)),
      restored: first((l) => /^alerts by type .*outage \S+ \(\d+ meters\) open \d\d:\d\d → restored \d\d:\d\d UTC/.test(l)),
    };
    console.log(`demo at default speed, seconds after start: ${JSON.stringify(seen)}`);
    console.log(lines.filter((l) => l.line.startsWith('alerts by type')).at(-1)?.line);
    for (const [what, at] of Object.entries(seen)) expect(at, `${what} within 60 s\n${out.slice(-3000)}`).toBeLessThan(60);
  }, 120_000);
});
