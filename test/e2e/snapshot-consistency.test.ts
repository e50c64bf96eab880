import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "../../lib/rpc.js";
import { SnapshotListRequest, SnapshotListResponse, hypervisorSubjects } from "../../protocol/mod.js";
import { generateDiskImage } from "../../simulators/content.js";
import { parseSimulatorConfig } from "../../simulators/config.js";
import { MiB, contentSpecOf, sha256File, startE2EStack, type E2EStack } from "../harness/stack.js";

/**
 * A VM whose workload keeps writing while it is backed up: the restore point must hold the disk
 * as it was when the snapshot was taken, not what was written while the backup read it.
 */

const DISK = 32 * MiB;
const WORKLOAD_BYTES_PER_SEC = 20_000_000;
// 32 MiB at 10 MiB/s keeps the snapshot open about 3 s while the workload writes ~60 MB.
const THROTTLE_BYTES_PER_SEC = 10 * MiB;

describe("point-in-time backup of a VM that writes during the backup", () => {
  let e2e: E2EStack;

  beforeAll(async () => {
    e2e = await startE2EStack({
      name: "snapshot",
      simulatorConfig: (dir) =>
        parseSimulatorConfig(
          {
            hypervisorId: "sim-1",
            retainSnapshotImages: true,
            hosts: [{ id: "host-1" }],
            datastores: [{ id: "ds-1", name: "datastore1", path: join(dir, "datastore1"), capacityBytes: 4 * 1024 * MiB }],
            vms: [
              {
                id: "busy-1",
                name: "busy-db",
                disks: [{ id: "disk-1", sizeBytes: DISK, content: { kind: "generated", seed: "e2e-busy", zeroPct: 30, compressiblePct: 40, randomPct: 30 } }],
              },
            ],
          },
          { source: "(e2e)" },
        ),
    });
    await e2e.putJob({
      id: "busy",
      hypervisor: "sim-1",
      repository: e2e.stack.repositoryId,
      vms: [{ id: "busy-1" }],
      throttleBytesPerSec: THROTTLE_BYTES_PER_SEC,
    });
  });

  afterAll(async () => {
    await e2e?.setWorkload("busy-1", 0).catch(() => undefined);
    await e2e?.stop();
  });

  it("restores the snapshot-time image, not the disk the workload kept changing", async () => {
    const { spec } = contentSpecOf(e2e.simulatorConfig, "busy-1", "disk-1");
    const original = join(e2e.workdir, "original.raw");
    await generateDiskImage(original, DISK, spec, MiB, { fsync: false });

    await e2e.setWorkload("busy-1", WORKLOAD_BYTES_PER_SEC);
    // Writes before the snapshot belong in it: wait until some happened.
    const deadline = Date.now() + 10_000;
    while (((await e2e.simStatus()).vms.find((v) => v.vmId === "busy-1")?.bytesWritten ?? 0) === 0) {
      if (Date.now() > deadline) throw new Error("the workload wrote nothing within 10 s");
      await new Promise((r) => setTimeout(r, 100));
    }

    let session;
    try {
      session = await e2e.runJob("busy");
    } finally {
      await e2e.setWorkload("busy-1", 0);
    }
    expect(session.result).toBe("success");
    const status = (await e2e.simStatus()).vms.find((v) => v.vmId === "busy-1")!;
    // Proof that the workload really wrote while the snapshot existed.
    expect(status.bytesWrittenDuringSnapshot).toBeGreaterThan(0);
    expect(status.snapshotId).toBeUndefined();
    const snapshots = await request(e2e.nc, hypervisorSubjects.snapshotList("sim-1"), SnapshotListRequest, { vmId: "busy-1" }, SnapshotListResponse);
    expect(snapshots.snapshots).toEqual([]);

    const vm = session.vms[0]!;
    expect(vm.snapshotId).toBeDefined();
    const rp = await e2e.restorePoint(vm.restorePointId!);
    const dir = join(e2e.workdir, "restored");
    const { session: restore, files } = await e2e.restoreToFiles(rp, dir);
    expect(restore.result).toBe("success");

    const restored = await sha256File(files.get("disk-1")!);
    const snapshotImage = (await e2e.snapshotImages("busy-1", vm.snapshotId!)).get("disk-1")!;
    const currentDisk = join(e2e.workdir, "hypervisor", "datastore1", "busy-1", "disk-1.raw");
    expect(snapshotImage).not.toBe(currentDisk);
    expect(restored).toBe(await sha256File(snapshotImage));
    // The writes made during the snapshot were committed to the disk afterwards; the restore point has none of them.
    expect(restored).not.toBe(await sha256File(currentDisk));
    // And the writes made before the snapshot are in it.
    expect(restored).not.toBe(await sha256File(original));
  });
});
