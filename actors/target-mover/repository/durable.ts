import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { randomToken } from "../../../lib/ids.js";

/** fsync of a directory makes a rename or a new entry in it durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes a file so that after a crash it is either absent or complete: temp file in the same
 * directory → fsync → rename → fsync of the directory.
 */
export async function writeFileDurable(path: string, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${randomToken(8)}.tmp`);
  const handle = await open(temp, "wx", 0o644);
  try {
    const parts = data instanceof Uint8Array ? [data] : data;
    await handle.writev(parts as Uint8Array[]);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  await rename(temp, path);
  await fsyncDir(dir);
}
