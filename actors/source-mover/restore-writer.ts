import { mkdir, open, type FileHandle } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { ErrorCode, FerryError, type BlockFrameMeta, type Msg, type RestoreOpenRequest, type TaskStats } from "../../protocol/mod.js";
import type { BlockWorkers, SlotArena } from "../../lib/block-workers.js";
import type { ReceiverHandlers, Sealed } from "../../lib/datachannel.js";

/** Blocks being checked and written at once; the receiver's concurrency. */
export const RESTORE_CONCURRENCY = 6;

/**
 * The receiving end of a restore: each block's checksum and digest are checked and it is
 * written at its offset by a block worker. The destination starts all-zero (sparse), so zero
 * blocks, which are never sent, need no write. The file is fsynced before the seal.
 */
export async function openRestoreDestination(req: Msg<typeof RestoreOpenRequest>): Promise<{ handle: FileHandle; path: string }> {
  const dest = req.destination;
  let path: string;
  if (dest.kind === "file") {
    path = dest.path;
    if (existsSync(path) && !dest.overwrite) {
      throw new FerryError(ErrorCode.Conflict, `${path} exists; restore with overwrite to replace it`, { retryable: false });
    }
    await mkdir(dirname(path), { recursive: true });
  } else if (dest.transport.mode === "file") {
    path = dest.transport.path;
  } else {
    throw new FerryError(ErrorCode.BadRequest, `transport ${String((dest.transport as { mode: string }).mode)} is not supported`);
  }
  // Truncating to zero, then to the size, makes every byte read as zero without writing them.
  const handle = await open(path, dest.kind === "file" ? "w" : "r+", 0o644);
  await handle.truncate(0);
  await handle.truncate(req.sizeBytes);
  return { handle, path };
}

export function restoreHandlers(
  req: Msg<typeof RestoreOpenRequest>,
  workers: BlockWorkers,
  handle: FileHandle,
  path: string,
  stats: TaskStats,
  started: number,
): { handlers: ReceiverHandlers; arena: SlotArena } {
  const totalBlocks = Math.ceil(req.sizeBytes / req.blockSize);
  const seen = new Uint8Array(totalBlocks);
  // Compressed blocks are never larger than raw ones (incompressible ones are stored raw).
  const arena = workers.createArena(req.blockSize, RESTORE_CONCURRENCY);
  let blocks = 0;
  const handlers: ReceiverHandlers = {
    onBlock: async (meta: BlockFrameMeta, parts: Uint8Array[]) => {
      if (meta.block >= totalBlocks) throw new FerryError(ErrorCode.BadRequest, `block ${meta.block} is past the end of the disk (${totalBlocks} blocks)`);
      if (seen[meta.block]) throw new FerryError(ErrorCode.BadRequest, `block ${meta.block} sent twice`);
      const expectedLen = Math.min(req.blockSize, req.sizeBytes - meta.block * req.blockSize);
      if (meta.rawLen !== expectedLen) throw new FerryError(ErrorCode.Corrupt, `block ${meta.block} is ${meta.rawLen} bytes, expected ${expectedLen}`);
      if (meta.storedLen > req.blockSize) throw new FerryError(ErrorCode.Corrupt, `block ${meta.block} stored as ${meta.storedLen} bytes, more than a block`);
      seen[meta.block] = 1;
      const slot = await arena.acquire();
      try {
        const view = arena.view(slot);
        let at = 0;
        for (const part of parts) {
          view.set(part, at);
          at += part.length;
        }
        await arena.decode(
          slot,
          { block: meta.block, storedLength: meta.storedLen, codec: meta.codec, rawLength: meta.rawLen, digest: meta.digest, sum: meta.sum },
          { fd: handle.fd, position: meta.block * req.blockSize },
        );
      } finally {
        arena.release(slot);
      }
      blocks++;
      stats.blocks++;
      stats.dataBytes += meta.rawLen;
      stats.transferredBytes += meta.storedLen;
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
  return { handlers, arena };
}
