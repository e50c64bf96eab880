import { ErrorCode, FerryError, type BlockFrameMeta, type Msg, type BackupOpenRequest, type DataEnd, type TaskStats } from "../../protocol/mod.js";
import { payloadSum } from "../../lib/block-codec.js";
import type { ReceiverHandlers, Sealed } from "../../lib/datachannel.js";
import { DIGEST_BYTES } from "./repository/format.js";
import type { PackWriter } from "./repository/pack-writer.js";
import type { Repository } from "./repository/repository.js";

/**
 * Receives one disk of a backup into the repository: checks each block's checksum, stores it
 * unless the repository holds it already, and at the end makes every pack the disk references
 * durable before writing its manifest (packs first, manifest after: invariant 2).
 */
export function ingestHandlers(
  repo: Repository,
  req: Msg<typeof BackupOpenRequest>,
  stats: TaskStats,
  started: number,
): ReceiverHandlers {
  const totalBlocks = Math.ceil(req.sizeBytes / req.blockSize);
  const digests = Buffer.alloc(totalBlocks * DIGEST_BYTES); // zero digest = zero block
  const seen = new Uint8Array(totalBlocks);
  const packs = new Set<PackWriter>();
  let blocks = 0;

  return {
    onBlock: async (meta: BlockFrameMeta, parts: Uint8Array[]) => {
      if (meta.block >= totalBlocks) throw new FerryError(ErrorCode.BadRequest, `block ${meta.block} is past the end of disk ${req.diskId} (${totalBlocks} blocks)`);
      if (seen[meta.block]) throw new FerryError(ErrorCode.BadRequest, `block ${meta.block} sent twice`);
      const expectedLen = Math.min(req.blockSize, req.sizeBytes - meta.block * req.blockSize);
      if (meta.rawLen !== expectedLen) throw new FerryError(ErrorCode.BadRequest, `block ${meta.block} is ${meta.rawLen} bytes, expected ${expectedLen}`);
      if (payloadSum(parts) !== meta.sum) throw new FerryError(ErrorCode.Corrupt, `block ${meta.block}: checksum mismatch, payload corrupted in transit`);
      seen[meta.block] = 1;
      const digest = Buffer.from(meta.digest, "hex");
      const result = await repo.appendBlock({ digest, codec: meta.codec, rawLen: meta.rawLen, storedLen: meta.storedLen, sum: meta.sum }, parts);
      if (result.writer) packs.add(result.writer);
      await result.written;
      digest.copy(digests, meta.block * DIGEST_BYTES);
      blocks++;
      if (result.deduped) stats.dedupedBlocks++;
      else stats.storedBytes += meta.storedLen;
    },
    onEnd: async (end: Msg<typeof DataEnd>): Promise<Sealed> => {
      if (end.blocks !== blocks || end.totalBlocks !== totalBlocks || end.sizeBytes !== req.sizeBytes) {
        throw new FerryError(ErrorCode.Corrupt, `disk ${req.diskId}: received ${blocks} blocks, sender says ${end.blocks} of ${end.totalBlocks}`);
      }
      await repo.seal(packs);
      const manifestDigest = await repo.stageManifest({
        header: {
          format: 1,
          restorePointId: req.restorePointId,
          jobId: req.jobId,
          vmId: req.vmId,
          diskId: req.diskId,
          label: req.diskLabel,
          sizeBytes: req.sizeBytes,
          blockSize: req.blockSize,
          totalBlocks,
          zeroBlocks: totalBlocks - blocks,
          createdAt: Date.now(),
        },
        digests,
      });
      const merged: TaskStats = {
        ...end.stats,
        storedBytes: stats.storedBytes,
        dedupedBlocks: stats.dedupedBlocks,
        durationMs: Math.round(performance.now() - started),
      };
      Object.assign(stats, merged);
      return { stats: merged, outcome: { kind: "backup", restorePointId: req.restorePointId, diskId: req.diskId, manifestDigest } };
    },
  };
}
