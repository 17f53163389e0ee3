/** npm run bench — every benchmark in turn, each in its own process (so one's memory and JIT state never colour another's). */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
let failed = 0;
for (const bench of ['ingest.ts', 'stream.ts', 'durability.ts']) {
  process.stdout.write(`\n=== bench/${bench} ===\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', `${here}${bench}`], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    process.stderr.write(`bench/${bench} failed (exit ${r.status})\n`);
  }
}
process.exitCode = failed ? 1 : 0;
