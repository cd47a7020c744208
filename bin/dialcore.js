#!/usr/bin/env node
// dialcore CLI entry. Runs the compiled build (dist/, made by `npm run build`, which the set-up
// script runs) when it is there; otherwise the TypeScript sources through tsx's loader.
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli.js', import.meta.url);
let main;
if (existsSync(built) && process.env.DIALCORE_FROM_SOURCE !== '1') {
  ({ main } = await import(built.href));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli.ts'));
}
const code = await main(process.argv.slice(2));
if (code >= 0) process.exit(code);
