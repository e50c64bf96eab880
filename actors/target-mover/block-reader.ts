import { ErrorCode, FerryError } from "../../protocol/mod.js";
import { DIGEST_BYTES, ZERO_DIGEST, type Manifest } from "./repository/format.js";
import type { Repository, StoredBlock } from "./repository/repository.js";

/** Blocks read ahead of the consumer (restore sends them; verify decompresses and hashes them). */
export const READ_AHEAD = 6;

export interface ManifestBlock {
  index: number;
  digest: Buffer;
  /** The stored block, or the error reading it (a verify counts it, a restore fails on it). */
  read: Promise<StoredBlock>;
}

/** Yields the manifest's non-zero blocks in order, reading up to READ_AHEAD of them at once. */
export async function* readManifestBlocks(repo: Repository, manifest: Manifest, signal: AbortSignal): AsyncGenerator<ManifestBlock> {
  const { totalBlocks } = manifest.header;
  const queue: ManifestBlock[] = [];
  let next = 0;
  const refill = () => {
    while (next < totalBlocks && queue.length < READ_AHEAD) {
      const index = next++;
      const digest = manifest.digests.subarray(index * DIGEST_BYTES, (index + 1) * DIGEST_BYTES);
      if (digest.equals(ZERO_DIGEST)) continue;
      const read = repo.readBlock(digest);
      read.catch(() => undefined); // surfaced to the consumer
      queue.push({ index, digest, read });
    }
  };
  refill();
  while (queue.length > 0) {
    if (signal.aborted) throw FerryError.from(signal.reason, ErrorCode.Canceled);
    yield queue.shift()!;
    refill();
  }
}
