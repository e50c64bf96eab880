import { mkdir, open, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { existsSync } from "node:fs";
import { ErrorCode, FerryError, type BlockFrameMeta, type Msg, type RestoreOpenRequest, type TaskStats } from "../../protocol/mod.js";
import { blockDigest, decompressBlock, digestHex, payloadSum } from "../../lib/block-codec.js";
import type { ReceiverHandlers, Sealed } from "../../lib/datachannel.js";

/**
 * The receiving end of a restore: checks each block's checksum and digest, then writes it at its
 * offset. The destination starts all-zero (sparse), so zero blocks, which are never sent, need no
 * write. The file is fsynced before the seal.
 */
export async function openRestoreDestination(req: Msg<typeof RestoreOpenRequest>): Promise<{ handle: FileHandle; path: string }> {
  const dest = req.destination;
  let path: string;
  if (dest.kind === "file") {
    path = dest.path;
    if (existsSync(path) && !dest.overwrite) {
      throw new FerryError(ErrorCode.Conflict, `${path} exists; restore with overwrite to replace it`, { retryable: false });
    }
  } else if (dest.transport.mode === "file") {
    path = dest.transport.path;
  } else {
    throw new FerryError(ErrorCode.BadRequest, `transport ${String((dest.transport as { mode: string }).mode)} is not supported`);
  }
  if (dest.kind === "file") await mkdir(dirname(path), { recursive: true });
  // Truncating to zero, then to the size, makes every byte read as zero without writing them.
  const handle = await open(path, dest.kind === "file" ? "w" : "r+", 0o644);
  await handle.truncate(0);
  await handle.truncate(req.sizeBytes);
  return { handle, path };
}

export function restoreHandlers(
  req: Msg<typeof RestoreOpenRequest>,
  handle: FileHandle,
  path: string,
  stats: TaskStats,
  started: number,
): ReceiverHandlers {
  const totalBlocks = Math.ceil(req.sizeBytes / req.blockSize);
  const seen = new Uint8Array(totalBlocks);
  let blocks = 0;
  return {
    onBlock: async (meta: BlockFrameMeta, parts: Uint8Array[]) => {
      if (meta.block >= totalBlocks) throw new FerryError(ErrorCode.BadRequest, `block ${meta.block} is past the end of the disk (${totalBlocks} blocks)`);
      if (seen[meta.block]) throw new FerryError(ErrorCode.BadRequest, `block ${meta.block} sent twice`);
      const expectedLen = Math.min(req.blockSize, req.sizeBytes - meta.block * req.blockSize);
      if (meta.rawLen !== expectedLen) throw new FerryError(ErrorCode.Corrupt, `block ${meta.block} is ${meta.rawLen} bytes, expected ${expectedLen}`);
      if (payloadSum(parts) !== meta.sum) throw new FerryError(ErrorCode.Corrupt, `block ${meta.block}: checksum mismatch`);
      const stored = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      const raw = await decompressBlock(stored, meta.codec, meta.rawLen);
      if (digestHex(blockDigest(raw)) !== meta.digest) throw new FerryError(ErrorCode.Corrupt, `block ${meta.block}: digest mismatch`);
      const { bytesWritten } = await handle.write(raw, 0, raw.length, meta.block * req.blockSize);
      if (bytesWritten !== raw.length) throw new FerryError(ErrorCode.Io, `short write at block ${meta.block} of ${path}`);
      seen[meta.block] = 1;
      blocks++;
      stats.blocks++;
      stats.dataBytes += raw.length;
      stats.transferredBytes += stored.length;
    },
    onEnd: async (end): Promise<Sealed> => {
      if (end.blocks !== blocks || end.totalBlocks !== totalBlocks || end.sizeBytes !== req.sizeBytes) {
        throw new FerryError(ErrorCode.Corrupt, `restore ended with ${blocks} blocks written, sender says ${end.blocks} of ${end.totalBlocks}`);
      }
      await handle.sync();
      await handle.close();
      stats.processedBytes = req.sizeBytes;
      stats.readBytes = end.stats.readBytes;
      stats.zeroBlocksSkipped = end.stats.zeroBlocksSkipped;
      stats.durationMs = Math.round(performance.now() - started);
      return { stats: { ...stats }, outcome: { kind: "restore", path, sizeBytes: req.sizeBytes } };
    },
  };
}
