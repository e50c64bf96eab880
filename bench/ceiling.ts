import { open } from "node:fs/promises";
import { join } from "node:path";
import { BlockWorkers } from "../lib/block-workers.js";

export interface CeilingResult {
  seconds: number;
  storedBytes: number;
  cpuSeconds: number;
}

/**
 * The ceiling: the same per-block work as a Ferry backup (read, zero check, BLAKE3, snappy,
 * xxh64 on the block workers; append; fdatasync) in one process with no bus, tuned the same way
 * (slots reused, blocks in flight, background fdatasync every 64 MiB, final fsync).
 */
export async function runCeiling(image: string, outDir: string, blockSize = 1024 * 1024, inFlight = 8): Promise<CeilingResult> {
  const input = await open(image, "r");
  const output = await open(join(outDir, "ceiling.pack"), "w");
  const size = (await input.stat()).size;
  const blocks = Math.ceil(size / blockSize);
  const workers = new BlockWorkers();
  const arena = workers.createArena(blockSize, inFlight);
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  let offset = 0;
  let unsynced = 0;
  let background: Promise<void> | undefined;
  const prepare = async (index: number) => {
    const slot = await arena.acquire();
    const length = Math.min(blockSize, size - index * blockSize);
    await input.read(arena.view(slot, length), 0, length, index * blockSize);
    return { slot, encoded: await arena.encode(slot, length, "snappy") };
  };
  const queue: Array<ReturnType<typeof prepare>> = [];
  let next = 0;
  while (next < blocks && queue.length < inFlight) queue.push(prepare(next++));
  while (queue.length > 0) {
    const { slot, encoded } = await queue.shift()!;
    if (!encoded.zero) {
      const header = Buffer.alloc(64);
      header.set(encoded.digest!, 24);
      const written = header.length + encoded.stored!.length;
      await output.writev([header, encoded.stored!], offset);
      offset += written;
      unsynced += written;
      if (unsynced >= 64 * 1024 * 1024 && !background) {
        unsynced = 0;
        background = output.datasync().finally(() => (background = undefined));
      }
    }
    arena.release(slot);
    if (next < blocks) queue.push(prepare(next++));
  }
  await background;
  await output.sync();
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpu0);
  arena.close();
  await workers.close();
  await input.close();
  await output.close();
  return { seconds, storedBytes: offset, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}
