#!/usr/bin/env node
// Runs the TypeScript sources straight from a checkout (no build step): tsx compiles on load.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli.ts');
await main(process.argv.slice(2));
