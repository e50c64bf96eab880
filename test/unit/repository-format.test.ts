import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { blockDigest, payloadSum } from "../../lib/block-codec.js";
import {
  DIGEST_BYTES,
  Magic,
  decodeManifest,
  decodePackIndex,
  decodeRestorePoint,
  encodeManifest,
  encodePackIndex,
  encodeRestorePoint,
  type BlockEntry,
} from "../../actors/target-mover/repository/format.js";
import { Repository } from "../../actors/target-mover/repository/repository.js";

function entryFor(raw: Buffer): BlockEntry {
  return { digest: blockDigest(raw), codec: "none", rawLen: raw.length, storedLen: raw.length, sum: payloadSum(raw) };
}

const RP_BASE = {
  jobId: "job-1", jobName: "Job", sessionId: "s-1",
  vm: { id: "vm-1", name: "vm one", hypervisorId: "hv", hostId: "h", guestOs: "linux", tags: [] },
  createdAt: 1, consistency: "crash" as const, warnings: [],
};

function manifestFor(restorePointId: string, diskId: string, digests: Buffer[]) {
  return {
    header: {
      format: 1 as const, restorePointId, jobId: "job-1", vmId: "vm-1", diskId, label: diskId, sizeBytes: digests.length * 65536,
      blockSize: 65536, totalBlocks: digests.length, zeroBlocks: 0, createdAt: 1,
    },
    digests: Buffer.concat(digests),
  };
}

describe("repository file formats", () => {
  it("round-trip pack indexes, manifests and restore points, each behind its magic tag", () => {
    const records = [0, 1, 2].map((i) => ({ ...entryFor(randomBytes(100 + i)), offset: 16 + i * 1000 }));
    const index = encodePackIndex(records);
    expect(index.subarray(0, 8).equals(Magic.packIndex)).toBe(true);
    expect(decodePackIndex(index)).toEqual(records.map((r) => ({ ...r, digest: Buffer.from(r.digest) })));

    const manifest = manifestFor("rp-1", "d-1", [blockDigest(Buffer.from("a")), Buffer.alloc(DIGEST_BYTES)]);
    const decoded = decodeManifest(encodeManifest(manifest));
    expect(decoded.header).toEqual(manifest.header);
    expect(decoded.digests.equals(manifest.digests)).toBe(true);

    const rp = { ...RP_BASE, id: "rp-1", repositoryId: "r", committedAt: 2, disks: [] };
    expect(decodeRestorePoint(encodeRestorePoint(rp))).toEqual(rp);
  });

  it("detect a damaged pack index by its checksum", () => {
    const index = encodePackIndex([{ ...entryFor(randomBytes(10)), offset: 16 }]);
    index[20] = index[20]! ^ 1;
    expect(() => decodePackIndex(index)).toThrow(/checksum/);
  });

  it("reject files without the magic tag and formats from the future", () => {
    expect(() => decodeManifest(Buffer.from("NOTFERRY........"))).toThrow(/bad magic/);
    const rp = encodeRestorePoint({ ...RP_BASE, id: "rp-1", repositoryId: "r", committedAt: 2, disks: [] });
    const future = Buffer.concat([Magic.restorePoint, Buffer.from(rp.subarray(8)).fill(0, 0, 0)]);
    // Rewrite the format field: msgpack map with format 1 → 2 (the byte after "format").
    const at = future.indexOf(Buffer.from("format")) + 6;
    future[at] = 2;
    expect(() => decodeRestorePoint(future)).toThrow(/format 2 is not supported/);
  });
});

describe("Repository", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "ferry-repo-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function storeDisk(repo: Repository, rpId: string, diskId: string, blocks: Buffer[]) {
    const writers = new Set<NonNullable<Awaited<ReturnType<Repository["appendBlock"]>>["writer"]>>();
    for (const block of blocks) {
      const r = await repo.appendBlock(entryFor(block), [block]);
      if (r.writer) writers.add(r.writer);
      await r.written;
    }
    await repo.seal(writers);
    return repo.stageManifest(manifestFor(rpId, diskId, blocks.map((b) => blockDigest(b))));
  }

  it("stores identical blocks once across disks and restore points", async () => {
    const repo = await Repository.open(dir, { id: "r1" });
    const blocks = [randomBytes(4096), randomBytes(4096)];
    await storeDisk(repo, "rp-1", "d-1", blocks);
    const first = await repo.info();
    await storeDisk(repo, "rp-2", "d-1", [...blocks, blocks[0]!]);
    const second = await repo.info();
    expect(second.storedBlocks).toBe(2);
    expect(second.storedBytes).toBe(first.storedBytes);
    await repo.close();
  });

  it("makes a restore point visible only once committed, and reads its blocks back", async () => {
    const repo = await Repository.open(dir, { id: "r1" });
    const blocks = [randomBytes(4096), randomBytes(4096)];
    const manifestDigest = await storeDisk(repo, "rp-1", "d-1", blocks);
    expect(await repo.listRestorePoints()).toEqual([]);
    await expect(repo.getRestorePoint("rp-1")).rejects.toMatchObject({ code: "not_found" });
    const rp = await repo.commitRestorePoint({ ...RP_BASE, id: "rp-1" }, [{ diskId: "d-1", manifestDigest }]);
    expect(rp.disks[0]).toMatchObject({ diskId: "d-1", blocks: 2, blockSize: 65536 });
    expect((await repo.listRestorePoints()).map((r) => r.id)).toEqual(["rp-1"]);
    const manifest = await repo.readManifest("rp-1", "d-1");
    const stored = await repo.readBlock(manifest.digests.subarray(DIGEST_BYTES, 2 * DIGEST_BYTES));
    expect(stored.stored.equals(blocks[1]!)).toBe(true);
    await repo.close();
  });

  it("refuses to commit a restore point whose manifest is missing or differs", async () => {
    const repo = await Repository.open(dir, { id: "r1" });
    await expect(repo.commitRestorePoint({ ...RP_BASE, id: "rp-9" }, [{ diskId: "d-1", manifestDigest: "00" }])).rejects.toMatchObject({ code: "not_found" });
    await storeDisk(repo, "rp-9", "d-1", [randomBytes(4096)]);
    await expect(repo.commitRestorePoint({ ...RP_BASE, id: "rp-9" }, [{ diskId: "d-1", manifestDigest: "ff".repeat(32) }])).rejects.toMatchObject({ code: "conflict" });
    expect(await repo.listRestorePoints()).toEqual([]);
    await repo.close();
  });

  it("finds its blocks again after a reopen, and ignores a pack that was never sealed", async () => {
    const repo = await Repository.open(dir, { id: "r1" });
    const kept = randomBytes(4096);
    await storeDisk(repo, "rp-1", "d-1", [kept]);
    const lost = randomBytes(4096);
    const pending = await repo.appendBlock(entryFor(lost), [lost]);
    await pending.written;
    // Simulate a crash: the open pack is never sealed (no index written).
    const reopened = await Repository.open(dir, { id: "r1" });
    expect(reopened.has(blockDigest(kept))).toBe(true);
    expect(reopened.has(blockDigest(lost))).toBe(false);
    await repo.close();
    await reopened.close();
  });

  it("detects a corrupted block in a pack by its checksum", async () => {
    const repo = await Repository.open(dir, { id: "r1" });
    const block = randomBytes(4096);
    await storeDisk(repo, "rp-1", "d-1", [block]);
    await repo.close();
    const packsDir = join(dir, "packs");
    const fanout = readdirSync(packsDir)[0]!;
    const pack = readdirSync(join(packsDir, fanout)).find((f) => f.endsWith(".pack"))!;
    const data = readFileSync(join(packsDir, fanout, pack));
    data[data.length - 100] = data[data.length - 100]! ^ 0xff;
    writeFileSync(join(packsDir, fanout, pack), data);
    const reopened = await Repository.open(dir, { id: "r1" });
    await expect(reopened.readBlock(blockDigest(block))).rejects.toMatchObject({ code: "corrupt" });
    await reopened.close();
  });

  it("refuses to open a folder holding another repository", async () => {
    const repo = await Repository.open(dir, { id: "r1" });
    await repo.close();
    expect(existsSync(join(dir, "config"))).toBe(true);
    await expect(Repository.open(dir, { id: "r2" })).rejects.toMatchObject({ code: "conflict" });
  });
});
