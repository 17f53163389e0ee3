#!/usr/bin/env node
// Runs the TypeScript sources straight from a checkout (no build step): tsx compiles on load.
// The product's commands live in src/cli.ts; the tools that drive it from outside (simulate, demo, score) in
// simulators/tools.ts, so the product never imports the simulator.
import { register } from 'tsx/esm/api';

register();
const argv = process.argv.slice(2);
const tools = await import('../simulators/tools.ts');
const { main } = tools.TOOLS.includes(argv[0] ?? '') ? tools : await import('../src/cli.ts');
await main(argv);
