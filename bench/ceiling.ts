import { open } from "node:fs/promises";
import { join } from "node:path";
import { blockDigest, compressBlock, isZero, payloadSum } from "../lib/block-codec.js";

export interface CeilingResult {
  seconds: number;
  storedBytes: number;
  cpuSeconds: number;
}

/**
 * The ceiling: the same per-block work as a Ferry backup (read, zero check, BLAKE3, snappy,
 * xxh64, append, fdatasync) in one process with no bus, tuned the same way (reused read buffers,
 * compressions in flight, background fdatasync every 64 MiB, final fsync).
 */
export async function runCeiling(image: string, outDir: string, blockSize = 1024 * 1024, inFlight = 6): Promise<CeilingResult> {
  const input = await open(image, "r");
  const output = await open(join(outDir, "ceiling.pack"), "w");
  const size = (await input.stat()).size;
  const blocks = Math.ceil(size / blockSize);
  const buffers = Array.from({ length: inFlight }, () => Buffer.allocUnsafeSlow(blockSize));
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  let offset = 0;
  let unsynced = 0;
  let background: Promise<void> | undefined;
  const prepare = async (index: number) => {
    const buffer = buffers[index % inFlight]!;
    const length = Math.min(blockSize, size - index * blockSize);
    await input.read(buffer, 0, length, index * blockSize);
    const raw = buffer.subarray(0, length);
    if (isZero(raw)) return undefined;
    const digest = blockDigest(raw);
    const { stored } = await compressBlock(raw, "snappy");
    return { digest, stored, sum: payloadSum(stored) };
  };
  const queue: Array<ReturnType<typeof prepare>> = [];
  let next = 0;
  while (next < blocks && queue.length < inFlight) queue.push(prepare(next++));
  while (queue.length > 0) {
    const block = await queue.shift()!;
    if (block) {
      const header = Buffer.alloc(64);
      block.digest.copy(header, 24);
      const written = header.length + block.stored.length;
      await output.writev([header, block.stored], offset);
      offset += written;
      unsynced += written;
      if (unsynced >= 64 * 1024 * 1024 && !background) {
        unsynced = 0;
        background = output.datasync().finally(() => (background = undefined));
      }
    }
    if (next < blocks) queue.push(prepare(next++));
  }
  await background;
  await output.sync();
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await input.close();
  await output.close();
  return { seconds, storedBytes: offset, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}
