import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let cachedRoot: string | undefined;

/** The checkout's root (the folder of Ferry's package.json), whether running from source or dist/. */
export function projectRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "ferry") {
      cachedRoot = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error("cannot find Ferry's package.json above " + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

/** The CLI entry as built: child processes (actors, simulator) run `node <this> ...`. */
export function cliEntry(): string {
  return join(projectRoot(), "dist", "cli", "main.js");
}
