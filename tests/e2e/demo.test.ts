import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/pipeline.js';

/** The main job: `meterflow demo` brings its services up, runs every role and shows live progress, then stops cleanly. */
describe('meterflow demo', () => {
  it('runs the simulated fleet through every role and stops cleanly', async () => {
    const child = spawn(process.execPath, ['bin/meterflow.js', 'demo', '--speed', '1800', '--duration', '50'], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', INFLUX_URL: 'http://127.0.0.1:1', API_PORT: '0', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
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
});
