import { describe, expect, it } from "vitest";
import { fileNamePart, restoreTargetFor, restoredDiskPath } from "../../cli/restore-target.js";
import type { RestorePoint } from "../../protocol/mod.js";

const disk = (diskId: string) => ({ diskId, label: diskId, sizeBytes: 1 << 20, blockSize: 1 << 20, blocks: 1, zeroBlocks: 0, manifestDigest: "d" });
const restorePoint: Pick<RestorePoint, "id" | "vm" | "disks"> = {
  id: "rp-1",
  vm: { id: "vm-1", name: "sql-01", hypervisorId: "sim-1", hostId: "host-1", guestOs: "linux", tags: [] },
  disks: [disk("disk-1"), disk("disk-2")],
};

describe("restore to files", () => {
  it("writes each disk to DIR/<vmName>_<diskId>.raw as an absolute path", () => {
    const target = restoreTargetFor(restorePoint, { toDir: "out", cwd: "/work" });
    expect(target).toEqual({
      kind: "files",
      overwrite: false,
      disks: [
        { diskId: "disk-1", path: "/work/out/sql-01_disk-1.raw" },
        { diskId: "disk-2", path: "/work/out/sql-01_disk-2.raw" },
      ],
    });
  });

  it("restores only the disks asked for, and passes overwrite on", () => {
    const target = restoreTargetFor(restorePoint, { toDir: "/restore", disks: ["disk-2"], overwrite: true });
    expect(target).toEqual({ kind: "files", overwrite: true, disks: [{ diskId: "disk-2", path: "/restore/sql-01_disk-2.raw" }] });
  });

  it("refuses a disk the restore point does not have, naming the ones it has", () => {
    expect(() => restoreTargetFor(restorePoint, { toDir: "/r", disks: ["disk-9"] })).toThrow(/no disk disk-9 \(disks: disk-1, disk-2\)/);
  });

  it("makes VM names safe as file names", () => {
    expect(fileNamePart("web server/01")).toBe("web_server_01");
    expect(fileNamePart("..hidden")).toBe("_hidden");
    expect(restoredDiskPath("/r", "a/b", "disk-1")).toBe("/r/a_b_disk-1.raw");
  });
});

describe("restore as a new VM", () => {
  it("names the new VM and its hypervisor", () => {
    expect(restoreTargetFor(restorePoint, { vmName: "sql-restored", hypervisor: "sim-1" })).toEqual({ kind: "vm", hypervisorId: "sim-1", name: "sql-restored" });
  });

  it("needs a hypervisor, and restores every disk", () => {
    expect(() => restoreTargetFor(restorePoint, { vmName: "x" })).toThrow(/--vm-name needs --hypervisor/);
    expect(() => restoreTargetFor(restorePoint, { vmName: "x", hypervisor: "sim-1", disks: ["disk-1"] })).toThrow(/--disk applies to --to-dir only/);
  });

  it("takes exactly one of --to-dir and --vm-name", () => {
    expect(() => restoreTargetFor(restorePoint, {})).toThrow(/exactly one of --to-dir DIR or --vm-name NAME/);
    expect(() => restoreTargetFor(restorePoint, { toDir: "/r", vmName: "x", hypervisor: "h" })).toThrow(/exactly one/);
  });
});
