import { open, type FileHandle } from "node:fs/promises";
import { ErrorCode, FerryError, emptyTaskStats, type BlockCodec, type Msg, type BackupStartRequest, type TaskStats } from "../../protocol/mod.js";
import { blockDigest, compressBlock, digestHex, isZero, payloadSum } from "../../lib/block-codec.js";
import type { ChannelSender, Sealed } from "../../lib/datachannel.js";
import { BufferPool } from "./buffer-pool.js";
import { Throttle } from "./throttle.js";

/** Blocks in flight between read and send: reads and compressions overlap with publishing. */
export const PIPELINE_DEPTH = 6;

interface PreparedBlock {
  index: number;
  buffer: Buffer;
  /** Undefined for an all-zero block: counted, never sent. */
  send?: { digest: string; codec: BlockCodec; rawLen: number; stored: Uint8Array; sum: string };
}

/**
 * Reads a snapshot disk in fixed blocks and streams the non-zero ones: read → zero check →
 * BLAKE3 → snappy → xxh64 → frames. Up to PIPELINE_DEPTH blocks are in flight; they are sent
 * in disk order.
 */
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

export async function readAndSend(
  req: Msg<typeof BackupStartRequest>,
  handle: FileHandle,
  sender: ChannelSender,
  stats: TaskStats,
  signal: AbortSignal,
): Promise<Sealed> {
  const started = performance.now();
  const { blockSize, sizeBytes } = req;
  try {
    const totalBlocks = Math.ceil(sizeBytes / blockSize);
    const pool = new BufferPool(blockSize, PIPELINE_DEPTH);
    const throttle = new Throttle(req.throttleBytesPerSec);
    let blocksSent = 0;

    const prepare = async (index: number): Promise<PreparedBlock> => {
      const buffer = await pool.acquire();
      const length = Math.min(blockSize, sizeBytes - index * blockSize);
      await throttle.take(length, signal);
      const { bytesRead } = await handle.read(buffer, 0, length, index * blockSize);
      if (bytesRead !== length) throw new FerryError(ErrorCode.Io, `short read at block ${index} of ${req.source.path}`);
      const raw = buffer.subarray(0, length);
      stats.readBytes += length;
      if (isZero(raw)) return { index, buffer };
      const digest = digestHex(blockDigest(raw));
      const { codec, stored } = await compressBlock(raw, req.compression);
      return { index, buffer, send: { digest, codec, rawLen: length, stored, sum: payloadSum(stored) } };
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
      const block = await inFlight.shift()!;
      const length = Math.min(blockSize, sizeBytes - block.index * blockSize);
      if (block.send) {
        await sender.sendBlock({ block: block.index, ...block.send });
        blocksSent++;
        stats.blocks++;
        stats.dataBytes += length;
        stats.transferredBytes += block.send.stored.length;
      } else {
        stats.zeroBlocksSkipped++;
      }
      stats.processedBytes += length;
      // The NATS client copies the payload when it flushes, in a microtask queued by publish:
      // the buffer is free again after that microtask.
      queueMicrotask(() => pool.release(block.buffer));
      refill();
    }
    stats.durationMs = Math.round(performance.now() - started);
    return await sender.end({ blocks: blocksSent, totalBlocks, sizeBytes, stats });
  } finally {
    await handle.close();
  }
}

export function freshStats(): TaskStats {
  return emptyTaskStats();
}
