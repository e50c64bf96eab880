import { z } from "zod";
import { ByteCount, EpochMs, Id } from "./common.js";
import { defineMessage } from "./codec.js";
import { Inventory, VmInfo } from "./inventory.js";
import { subject } from "./subject.js";

/**
 * The hypervisor API as Ferry sees it: `ferry.hv.<hypervisorId>.<verb>`. The simulator serves it;
 * a gateway to a real hypervisor would serve the same subjects and messages.
 */
export const hypervisorSubjects = {
  /** `ferry.hv.<hypervisorId>.inventory` */
  inventory: (hypervisorId: string) => subject("hv", hypervisorId, "inventory"),
  /** `ferry.hv.<hypervisorId>.snapshot.create` */
  snapshotCreate: (hypervisorId: string) => subject("hv", hypervisorId, "snapshot", "create"),
  /** `ferry.hv.<hypervisorId>.snapshot.remove`: commits (consolidates) the snapshot's delta into the disk. */
  snapshotRemove: (hypervisorId: string) => subject("hv", hypervisorId, "snapshot", "remove"),
  /** `ferry.hv.<hypervisorId>.snapshot.list` */
  snapshotList: (hypervisorId: string) => subject("hv", hypervisorId, "snapshot", "list"),
  /** `ferry.hv.<hypervisorId>.vm.create`: a new, empty VM (restore target). */
  vmCreate: (hypervisorId: string) => subject("hv", hypervisorId, "vm", "create"),
  /** `ferry.hv.<hypervisorId>.sim.<verb>`: simulator-only controls (tests, demo). */
  sim: (hypervisorId: string, verb: SimVerb) => subject("hv", hypervisorId, "sim", verb),
} as const;

/**
 * How a mover reaches a disk's bytes. `file`: the disk (or the snapshot's read-only base) is a
 * raw file the mover opens directly, like VMware's hot-add or direct SAN access. Later modes
 * (network block reads over the bus) extend this union.
 */
export const DiskTransport = z.discriminatedUnion("mode", [
  z.object({ mode: z.literal("file"), path: z.string().min(1) }),
]);
export type DiskTransport = z.infer<typeof DiskTransport>;

export const SnapshotDisk = z.object({ diskId: Id, sizeBytes: ByteCount, transport: DiskTransport });
export const SnapshotInfo = z.object({
  id: Id,
  vmId: Id,
  name: z.string(),
  createdAt: EpochMs,
  quiesced: z.boolean(),
  disks: z.array(SnapshotDisk),
});
export type SnapshotInfo = z.infer<typeof SnapshotInfo>;

export const InventoryRequest = defineMessage("hv.inventory.req", {});
export const InventoryResponse = defineMessage("hv.inventory.res", { inventory: Inventory });

export const SnapshotCreateRequest = defineMessage("hv.snapshot.create.req", {
  vmId: Id,
  name: z.string().min(1).max(200),
  /** The guest was quiesced by the guest processor (recorded, not acted on by the hypervisor). */
  quiesced: z.boolean().default(false),
  /** Who asked, for the snapshot hunter to find orphans later. */
  sessionId: Id.optional(),
});
export const SnapshotCreateResponse = defineMessage("hv.snapshot.create.res", { snapshot: SnapshotInfo });

export const SnapshotRemoveRequest = defineMessage("hv.snapshot.remove.req", { vmId: Id, snapshotId: Id });
export const SnapshotRemoveResponse = defineMessage("hv.snapshot.remove.res", {
  /** Bytes written to the VM while the snapshot existed, merged into its disks now. */
  mergedBytes: ByteCount,
});

export const SnapshotListRequest = defineMessage("hv.snapshot.list.req", { vmId: Id.optional() });
export const SnapshotListResponse = defineMessage("hv.snapshot.list.res", {
  snapshots: z.array(SnapshotInfo.extend({ sessionId: Id.optional() })),
});

export const VmCreateRequest = defineMessage("hv.vm.create.req", {
  name: z.string().min(1).max(200),
  hostId: Id.optional(),
  datastoreId: Id.optional(),
  guestOs: z.string().default("other"),
  tags: z.array(z.string()).default([]),
  disks: z.array(z.object({ label: z.string(), sizeBytes: ByteCount })).min(1),
});
export const VmCreateResponse = defineMessage("hv.vm.create.res", {
  vm: VmInfo,
  /** Writable transports of the new VM's disks, in request order. */
  disks: z.array(z.object({ diskId: Id, transport: DiskTransport })),
});

/** Simulator-only verbs. */
export const SimVerb = {
  /** Sets the background write rate of a VM's workload writer. */
  workload: "workload",
  /** Paths of files holding each disk's content as of a snapshot (kept when `retainSnapshotImages`). */
  snapshotImages: "snapshotImages",
  /** Current status: snapshots, bytes written by workloads, per disk. */
  status: "status",
} as const;
export type SimVerb = (typeof SimVerb)[keyof typeof SimVerb];

export const SimWorkloadRequest = defineMessage("hv.sim.workload.req", {
  vmId: Id,
  /** Bytes per second written at random offsets; 0 stops the writer. */
  bytesPerSec: ByteCount,
  /** Size of each write. */
  ioSizeBytes: z.number().int().min(512).max(8 * 1024 * 1024).default(64 * 1024),
});
export const SimWorkloadResponse = defineMessage("hv.sim.workload.res", { vmId: Id, bytesPerSec: ByteCount });

export const SimSnapshotImagesRequest = defineMessage("hv.sim.snapshotImages.req", { vmId: Id, snapshotId: Id });
export const SimSnapshotImagesResponse = defineMessage("hv.sim.snapshotImages.res", {
  images: z.array(z.object({ diskId: Id, path: z.string() })),
});

export const SimStatusRequest = defineMessage("hv.sim.status.req", {});
export const SimStatusResponse = defineMessage("hv.sim.status.res", {
  vms: z.array(
    z.object({
      vmId: Id,
      snapshotId: Id.optional(),
      workloadBytesPerSec: ByteCount,
      /** Bytes written by the workload and guest applications since the simulator started. */
      bytesWritten: ByteCount,
      /** Of those, bytes written while a snapshot existed (they went to the delta). */
      bytesWrittenDuringSnapshot: ByteCount,
    }),
  ),
});
