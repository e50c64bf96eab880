#!/usr/bin/env node
// The `ferry` command: runs the compiled CLI (`npm run build` produces dist/).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const entry = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error("ferry: dist/ is missing; run `npm run build` (npm ci runs it) first");
  process.exit(1);
}
await import(entry.href);
