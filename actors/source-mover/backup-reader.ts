import { open, type FileHandle } from "node:fs/promises";
import { ErrorCode, FerryError, type Msg, type BackupStartRequest, type TaskStats } from "../../protocol/mod.js";
import { digestHex } from "../../lib/block-codec.js";
import type { BlockWorkers, EncodedBlock } from "../../lib/block-workers.js";
import type { ChannelSender, Sealed } from "../../lib/datachannel.js";
import { Throttle } from "./throttle.js";

/**
 * Blocks in flight between read and send, each in its own slot: reads, the workers' hashing and
 * compression, and publishing overlap, and the task's memory is bounded by this many blocks.
 */
export const PIPELINE_DEPTH = 8;

/** Opens the snapshot disk, so a missing or short disk is refused before the task is accepted. */
export async function openSource(req: Msg<typeof BackupStartRequest>): Promise<FileHandle> {
  if (req.source.mode !== "file") throw new FerryError(ErrorCode.BadRequest, `transport ${String(req.source.mode)} is not supported`);
  let handle: FileHandle;
  try {
    handle = await open(req.source.path, "r");
  } catch (err) {
    throw new FerryError(ErrorCode.NotFound, `disk ${req.diskId}: cannot open ${req.source.path}: ${(err as Error).message}`, { retryable: false, cause: err });
  }
  const { size } = await handle.stat();
  if (size < req.sizeBytes) {
    await handle.close();
    throw new FerryError(ErrorCode.BadRequest, `disk ${req.diskId}: ${req.source.path} holds ${size} bytes, expected ${req.sizeBytes}`, { retryable: false });
  }
  return handle;
}

interface PreparedBlock {
  index: number;
  slot: number;
  length: number;
  encoded: EncodedBlock;
}

/**
 * Reads a snapshot disk in fixed blocks and streams the non-zero ones: read (libuv pool) →
 * zero check, BLAKE3, snappy, xxh64 (block workers) → frames (event loop). Blocks are sent in
 * disk order.
 */
export async function readAndSend(
  req: Msg<typeof BackupStartRequest>,
  handle: FileHandle,
  workers: BlockWorkers,
  sender: ChannelSender,
  stats: TaskStats,
  signal: AbortSignal,
): Promise<Sealed> {
  const started = performance.now();
  const { blockSize, sizeBytes } = req;
  const totalBlocks = Math.ceil(sizeBytes / blockSize);
  const arena = workers.createArena(blockSize, PIPELINE_DEPTH);
  const throttle = new Throttle(req.throttleBytesPerSec);
  let blocksSent = 0;
  try {
    const prepare = async (index: number): Promise<PreparedBlock> => {
      const slot = await arena.acquire();
      try {
        const length = Math.min(blockSize, sizeBytes - index * blockSize);
        await throttle.take(length, signal);
        const { bytesRead } = await handle.read(arena.view(slot, length), 0, length, index * blockSize);
        if (bytesRead !== length) throw new FerryError(ErrorCode.Io, `short read at block ${index} of ${req.source.path}`);
        stats.readBytes += length;
        return { index, slot, length, encoded: await arena.encode(slot, length, req.compression) };
      } catch (err) {
        arena.release(slot);
        throw err;
      }
    };

    const inFlight: Array<Promise<PreparedBlock>> = [];
    let next = 0;
    const refill = () => {
      while (next < totalBlocks && inFlight.length < PIPELINE_DEPTH) {
        const p = prepare(next++);
        p.catch(() => undefined); // awaited in order below
        inFlight.push(p);
      }
    };
    refill();
    while (inFlight.length > 0) {
      signal.throwIfAborted();
      const { index, slot, length, encoded } = await inFlight.shift()!;
      if (!encoded.zero) {
        await sender.sendBlock({ block: index, digest: digestHex(encoded.digest!), codec: encoded.codec!, rawLen: length, sum: encoded.sum!, stored: encoded.stored! });
        blocksSent++;
        stats.blocks++;
        stats.dataBytes += length;
        stats.transferredBytes += encoded.stored!.length;
      } else {
        stats.zeroBlocksSkipped++;
      }
      stats.processedBytes += length;
      // The NATS client copies a payload when it flushes, in a microtask queued by publish: the
      // slot (which may be the payload itself) is free again after that microtask.
      queueMicrotask(() => arena.release(slot));
      refill();
    }
    stats.durationMs = Math.round(performance.now() - started);
    return await sender.end({ blocks: blocksSent, totalBlocks, sizeBytes, stats });
  } finally {
    // Every prepared block has settled by now (awaited above, or the task failed and nothing
    // awaits them: give their reads a moment to finish before the slots go away).
    await new Promise((r) => setImmediate(r));
    arena.close();
  }
}
