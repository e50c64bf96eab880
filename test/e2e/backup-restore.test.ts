import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Session } from "../../lib/session-store.js";
import type { RestorePoint } from "../../protocol/mod.js";
import { generateDiskImage, type ContentSpec } from "../../simulators/content.js";
import { parseSimulatorConfig, type SimulatorConfig } from "../../simulators/config.js";
import { demoSimulatorConfig } from "../../simulators/demo.js";
import { MiB, blockCounts, contentSpecOf, sha256File, startE2EStack, type E2EStack } from "../harness/stack.js";

/**
 * The whole product through its six actors: three demo VMs with mixed content (vm-1 has two disks
 * and an application-aware guest) backed up, every disk restored to a raw file and compared by
 * SHA-256 with the snapshot's content, every restore point verified; then the statistics of zero
 * skipping and deduplication, including two VMs attached to one image.
 */

const DISK = 16 * MiB;
const TWIN_DISK = 8 * MiB;
const TWIN_SPEC: ContentSpec = { seed: "e2e-twin-image", zeroPct: 25, compressiblePct: 50, randomPct: 25 };

function withTwins(base: SimulatorConfig, imagePath: string): SimulatorConfig {
  const twin = (id: string) => ({ id, name: `twin-${id}`, tags: ["twins"], disks: [{ id: "disk-1", content: { kind: "image" as const, path: imagePath } }] });
  return parseSimulatorConfig({ ...base, vms: [...base.vms, twin("vm-4"), twin("vm-5")] }, { source: "(e2e)" });
}

const diskKey = (vmId: string, diskId: string) => `${vmId}/${diskId}`;

describe("backup, restore and verify of three VMs through every actor", () => {
  let e2e: E2EStack;
  let imagesDir: string;
  let twinImage: string;
  let first: Session;
  let firstPoints: RestorePoint[];
  /** SHA-256 of the content the generator made for each disk, computed apart from the stack. */
  const generatedSha = new Map<string, string>();

  beforeAll(async () => {
    imagesDir = mkdtempSync(join(tmpdir(), "ferry-e2e-images-"));
    twinImage = join(imagesDir, "twin.raw");
    await generateDiskImage(twinImage, TWIN_DISK, TWIN_SPEC, MiB, { fsync: false });
    e2e = await startE2EStack({
      name: "backup",
      simulatorConfig: (dir) => withTwins(demoSimulatorConfig({ dir, vms: 3, diskSizeBytes: DISK }), twinImage),
    });
    await e2e.putJob({
      id: "mixed",
      hypervisor: e2e.simulatorConfig.hypervisorId,
      repository: e2e.stack.repositoryId,
      vms: [{ id: "vm-1", guestProcessing: true }, { id: "vm-2" }, { id: "vm-3" }],
    });
    await e2e.putJob({ id: "twins", hypervisor: e2e.simulatorConfig.hypervisorId, repository: e2e.stack.repositoryId, vms: [{ tag: "twins" }] });
    for (const vm of e2e.simulatorConfig.vms.filter((v) => ["vm-1", "vm-2", "vm-3"].includes(v.id))) {
      for (const disk of vm.disks) {
        const { spec, sizeBytes } = contentSpecOf(e2e.simulatorConfig, vm.id, disk.id);
        const path = join(imagesDir, `${vm.id}-${disk.id}.raw`);
        await generateDiskImage(path, sizeBytes, spec, MiB, { fsync: false });
        generatedSha.set(diskKey(vm.id, disk.id), await sha256File(path));
      }
    }
  });

  afterAll(async () => {
    await e2e?.stop();
    if (imagesDir) rmSync(imagesDir, { recursive: true, force: true });
  });

  it("backs up every disk of the three VMs into one restore point per VM, vm-1 application-consistent", async () => {
    first = await e2e.runJob("mixed");
    expect(first.error).toBeUndefined();
    expect(first.result).toBe("success");
    expect(first.tasks.map((t) => diskKey(t.vmId, t.diskId)).sort()).toEqual(["vm-1/disk-1", "vm-1/disk-2", "vm-2/disk-1", "vm-3/disk-1"]);
    for (const task of first.tasks) {
      expect(task.state, `${task.vmId}/${task.diskId}`).toBe("succeeded");
      expect(task.proxyId).toBe("proxy-1");
      expect(task.targetMoverId).toBe("repo-1-mover");
    }
    expect(first.vms).toHaveLength(3);
    for (const vm of first.vms) {
      expect(vm.state).toBe("succeeded");
      expect(vm.restorePointId).toBeDefined();
      expect(vm.snapshotId).toBeDefined();
      expect(vm.consistency).toBe(vm.vmId === "vm-1" ? "application" : "crash");
    }
    firstPoints = await Promise.all(first.vms.map((vm) => e2e.restorePoint(vm.restorePointId!)));
    for (const rp of firstPoints) {
      const vm = e2e.simulatorConfig.vms.find((v) => v.id === rp.vm.id)!;
      expect(rp.sessionId).toBe(first.id);
      expect(rp.jobId).toBe("mixed");
      expect(rp.disks.map((d) => d.diskId).sort()).toEqual(vm.disks.map((d) => d.id).sort());
      for (const disk of rp.disks) {
        expect(disk.sizeBytes).toBe(vm.disks.find((d) => d.id === disk.diskId)!.sizeBytes);
      }
    }
    expect(firstPoints.find((rp) => rp.vm.id === "vm-1")!.consistency).toBe("application");
  });

  it("skips zero blocks: processes the whole disk but sends only the non-zero blocks, compressed", () => {
    expect(first, "the backup test ran first").toBeDefined();
    let zeroSum = 0;
    for (const task of first.tasks) {
      const { spec, sizeBytes } = contentSpecOf(e2e.simulatorConfig, task.vmId, task.diskId);
      const counts = blockCounts(spec, sizeBytes);
      const nonZeroBytes = (counts.compressible + counts.random) * MiB;
      const where = `${task.vmId}/${task.diskId}`;
      expect(counts.zero, `${where} has zero blocks to skip`).toBeGreaterThan(0);
      expect(task.stats.processedBytes, where).toBe(sizeBytes);
      expect(task.stats.zeroBlocksSkipped, where).toBe(counts.zero);
      expect(task.stats.blocks, where).toBe(counts.compressible + counts.random);
      expect(task.stats.dataBytes, where).toBe(nonZeroBytes);
      expect(task.stats.transferredBytes, where).toBeLessThan(nonZeroBytes);
      // Random blocks do not shrink; the text-like ones compress about 2x, so at least 1.5x here.
      expect(task.stats.transferredBytes, where).toBeGreaterThanOrEqual(counts.random * MiB);
      expect(task.stats.transferredBytes, where).toBeLessThan(counts.random * MiB + (counts.compressible * MiB) / 1.5);
      // A fresh repository and unique blocks: everything sent is stored, nothing deduplicated.
      expect(task.stats.dedupedBlocks, where).toBe(0);
      expect(task.stats.storedBytes, where).toBe(task.stats.transferredBytes);
      zeroSum += counts.zero;
    }
    expect(first.stats.zeroBlocksSkipped).toBe(zeroSum);
    expect(first.stats.processedBytes).toBe(first.tasks.reduce((s, t) => s + t.sizeBytes, 0));
  });

  it("restores every disk through the movers byte-identical to its snapshot and verifies every restore point", async () => {
    expect(firstPoints, "the backup test ran first").toBeDefined();
    const dir = join(e2e.workdir, "restored-first");
    const restores = await Promise.all(firstPoints.map((rp) => e2e.restoreToFiles(rp, dir)));
    let compared = 0;
    for (const [i, rp] of firstPoints.entries()) {
      const { session, files } = restores[i]!;
      expect(session.result, `restore of ${rp.vm.id}`).toBe("success");
      expect(session.tasks).toHaveLength(rp.disks.length);
      for (const task of session.tasks) {
        expect(task.state).toBe("succeeded");
        expect(task.stats.processedBytes).toBe(task.sizeBytes);
      }
      const snapshotId = first.vms.find((v) => v.vmId === rp.vm.id)!.snapshotId!;
      const snapshotImages = await e2e.snapshotImages(rp.vm.id, snapshotId);
      for (const disk of rp.disks) {
        const restored = await sha256File(files.get(disk.diskId)!);
        const snapshot = await sha256File(snapshotImages.get(disk.diskId)!);
        expect(restored, `${rp.vm.id}/${disk.diskId} against the snapshot image`).toBe(snapshot);
        expect(restored, `${rp.vm.id}/${disk.diskId} against the generated content`).toBe(generatedSha.get(diskKey(rp.vm.id, disk.diskId)));
        compared++;
      }
    }
    expect(compared).toBe(4);

    const verifies = await Promise.all(firstPoints.map((rp) => e2e.verify(rp)));
    for (const [i, session] of verifies.entries()) {
      expect(session.result, `verify of ${firstPoints[i]!.vm.id}`).toBe("success");
      expect(session.tasks).toHaveLength(firstPoints[i]!.disks.length);
      for (const task of session.tasks) expect(task.state).toBe("succeeded");
    }
  });

  it("stores identical blocks once: a second backup of the same VMs deduplicates every block and adds no bytes", async () => {
    expect(first, "the backup test ran first").toBeDefined();
    const before = await e2e.repositoryInfo();
    const second = await e2e.runJob("mixed");
    expect(second.result).toBe("success");
    const after = await e2e.repositoryInfo();
    for (const task of second.tasks) {
      const { spec, sizeBytes } = contentSpecOf(e2e.simulatorConfig, task.vmId, task.diskId);
      const counts = blockCounts(spec, sizeBytes);
      const where = `${task.vmId}/${task.diskId}`;
      expect(task.state, where).toBe("succeeded");
      expect(task.stats.dedupedBlocks, where).toBe(counts.compressible + counts.random);
      expect(task.stats.storedBytes, where).toBe(0);
      expect(task.stats.zeroBlocksSkipped, where).toBe(counts.zero);
    }
    expect(second.stats.storedBytes).toBe(0);
    expect(after.storedBytes).toBe(before.storedBytes);
    expect(after.storedBlocks).toBe(before.storedBlocks);
    expect(after.restorePoints).toBe(before.restorePoints + 3);

    // A restore point made only of blocks stored by another still restores exactly.
    const vm1 = second.vms.find((v) => v.vmId === "vm-1")!;
    expect(vm1.restorePointId).not.toBe(first.vms.find((v) => v.vmId === "vm-1")!.restorePointId);
    const rp = await e2e.restorePoint(vm1.restorePointId!);
    const dir = join(e2e.workdir, "restored-second");
    const { session, files } = await e2e.restoreToFiles(rp, dir);
    expect(session.result).toBe("success");
    for (const disk of rp.disks) {
      expect(await sha256File(files.get(disk.diskId)!)).toBe(generatedSha.get(diskKey("vm-1", disk.diskId)));
    }
  });

  it("stores the blocks of two VMs attached to the same image once", async () => {
    const counts = blockCounts(TWIN_SPEC, TWIN_DISK);
    const nonZero = counts.compressible + counts.random;
    const before = await e2e.repositoryInfo();
    const session = await e2e.runJob("twins");
    expect(session.result).toBe("success");
    expect(session.tasks.map((t) => t.vmId).sort()).toEqual(["vm-4", "vm-5"]);
    const after = await e2e.repositoryInfo();
    expect(session.stats.blocks).toBe(2 * nonZero);
    expect(session.stats.dedupedBlocks).toBe(nonZero);
    expect(after.storedBlocks - before.storedBlocks).toBe(nonZero);
    expect(after.storedBytes - before.storedBytes).toBe(session.stats.storedBytes);
    expect(session.stats.storedBytes).toBeLessThan(nonZero * MiB);

    const imageSha = await sha256File(twinImage);
    const dir = join(e2e.workdir, "restored-twins");
    for (const vm of session.vms) {
      const { session: restore, files } = await e2e.restoreToFiles(await e2e.restorePoint(vm.restorePointId!), dir);
      expect(restore.result).toBe("success");
      expect(await sha256File(files.get("disk-1")!), vm.vmId).toBe(imageSha);
    }
  });
});
