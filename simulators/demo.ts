import { statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { parseSimulatorConfig, type DiskConfigInput, type SimulatorConfig, type VmConfigInput } from "./config.js";

export interface DemoSimulatorOptions {
  /** Folder for the demo's datastore (`<dir>/datastore1`). */
  dir: string;
  /** Number of VMs (vm-1 … vm-N); with `images` and no `vms`, one VM per image. */
  vms?: number;
  /** Size of each VM's main disk (vm-1's second disk is a quarter of it). Default 256 MiB. */
  diskSizeBytes?: number;
  /** Existing raw files to attach read-only as the disks instead of generated ones. */
  images?: string[];
  /** Seed of the generated content; each disk derives its own from it. Default 1. */
  seed?: number | string;
  /** Background writer per VM (bytes per second); default none. */
  workloadBytesPerSec?: number;
  /** Write rate of vm-1's application while it runs; default 0. */
  appWriteBytesPerSec?: number;
  hypervisorId?: string;
}

const MiB = 1024 * 1024;

/**
 * The demo's simulator: hosts host-1 and host-2, one datastore under `dir`, VMs vm-1 … vm-N with
 * mixed content (30% zero, 40% compressible, 30% random blocks), vm-1 with a second smaller disk
 * and an application-aware guest (one database), no workloads, snapshot images retained.
 * With `images`, those files are attached read-only as the disks instead.
 */
export function demoSimulatorConfig(opts: DemoSimulatorOptions): SimulatorConfig {
  const dir = resolve(opts.dir);
  const seed = opts.seed ?? 1;
  const diskSizeBytes = opts.diskSizeBytes ?? 256 * MiB;
  const images = opts.images?.map((p) => resolve(p)) ?? [];
  const vmCount = opts.vms ?? (images.length > 0 ? images.length : 3);
  const hosts = [
    { id: "host-1", name: "esx-host-1" },
    { id: "host-2", name: "esx-host-2" },
  ];
  const diskBytes = images.length > 0 ? images.reduce((sum, p) => sum + statSync(p).size, 0) : vmCount * diskSizeBytes * 1.25;
  const datastore = {
    id: "ds-1",
    name: "datastore1",
    path: join(dir, "datastore1"),
    // Room for the disks, their deltas and the retained snapshot images of a few backups.
    capacityBytes: Math.max(64 * 1024 * MiB, Math.ceil(diskBytes * 8)),
  };
  const generated = (vmId: string, diskId: string) => ({
    kind: "generated" as const,
    seed: `${seed}-${vmId}-${diskId}`,
    zeroPct: 30,
    compressiblePct: 40,
    randomPct: 30,
  });

  const vms: VmConfigInput[] = [];
  for (let i = 1; i <= vmCount; i++) {
    const vmId = `vm-${i}`;
    let disks: DiskConfigInput[];
    if (images.length > 0) {
      // Images go round-robin over the VMs; a VM left without one (more VMs than images) shares one.
      const mine = images.filter((_, j) => j % vmCount === i - 1);
      if (mine.length === 0) mine.push(images[(i - 1) % images.length]!);
      disks = mine.map((path, d) => ({
        id: `disk-${d + 1}`,
        label: `Hard disk ${d + 1} (${basename(path)})`,
        datastoreId: datastore.id,
        content: { kind: "image", path },
      }));
    } else {
      disks = [{ id: "disk-1", label: "Hard disk 1", sizeBytes: diskSizeBytes, datastoreId: datastore.id, content: generated(vmId, "disk-1") }];
      if (i === 1) {
        const small = Math.max(MiB, Math.floor(diskSizeBytes / 4 / MiB) * MiB);
        disks.push({ id: "disk-2", label: "Hard disk 2", sizeBytes: small, datastoreId: datastore.id, content: generated(vmId, "disk-2") });
      }
    }
    const appAware = i === 1;
    vms.push({
      id: vmId,
      name: appAware ? "sql-01" : `app-${String(i).padStart(2, "0")}`,
      hostId: hosts[(i - 1) % hosts.length]!.id,
      guestOs: appAware ? "windows-server-2022" : "ubuntu-22.04",
      tags: appAware ? ["demo", "app-aware", "tier-1"] : ["demo", "tier-2"],
      powerState: "poweredOn",
      disks,
      ...(appAware
        ? {
            guest: {
              os: "windows-server-2022",
              applications: [{ name: "sqlserver", kind: "database", freezeMs: 100, writeBytesPerSec: images.length > 0 ? 0 : (opts.appWriteBytesPerSec ?? 0) }],
            },
          }
        : {}),
      ...(opts.workloadBytesPerSec && images.length === 0 ? { workload: { bytesPerSec: opts.workloadBytesPerSec, ioSizeBytes: 64 * 1024 } } : {}),
    });
  }
  return parseSimulatorConfig(
    { hypervisorId: opts.hypervisorId ?? "sim-1", retainSnapshotImages: true, hosts, datastores: [datastore], vms },
    { baseDir: dir, source: "(demo)" },
  );
}
