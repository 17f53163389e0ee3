import { runCommand } from '../src/shared/command.js';

/**
 * `meterflow simulate | demo | score`: the tools that drive the product from outside. bin/meterflow.js hands these
 * commands here, so the product (src/) never imports the simulator.
 */
export const TOOLS = ['simulate', 'demo', 'score'] as const;

export async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  await runCommand(cmd ?? 'tools', async (config, log) => {
    switch (cmd) {
      case 'simulate': {
        const { runSimulateCommand } = await import('./cli.js');
        await runSimulateCommand(rest, log);
        return;
      }
      case 'demo': {
        const { runDemo } = await import('./demo.js');
        await runDemo(rest, config, log);
        return;
      }
      case 'score': {
        const { runScoreCommand } = await import('./score-cli.js');
        process.exitCode = await runScoreCommand(rest, config, log);
        return;
      }
      default:
        process.stderr.write(`meterflow: unknown tool "${cmd}" (${TOOLS.join(', ')})\n`);
        process.exitCode = 2;
    }
  });
}
