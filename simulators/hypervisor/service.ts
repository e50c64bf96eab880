import type { Service } from "@nats-io/services";
import type { Logger } from "../../lib/log.js";
import { serveEndpoint } from "../../lib/rpc.js";
import {
  InventoryRequest,
  InventoryResponse,
  SimSnapshotImagesRequest,
  SimSnapshotImagesResponse,
  SimStatusRequest,
  SimStatusResponse,
  SimVerb,
  SimWorkloadRequest,
  SimWorkloadResponse,
  SnapshotCreateRequest,
  SnapshotCreateResponse,
  SnapshotListRequest,
  SnapshotListResponse,
  SnapshotRemoveRequest,
  SnapshotRemoveResponse,
  VmCreateRequest,
  VmCreateResponse,
  hypervisorSubjects,
} from "../../protocol/mod.js";
import type { SimHypervisor } from "./hypervisor.js";

export type ServeHooks = Parameters<typeof serveEndpoint>[3];

/** Serves the hypervisor API `ferry.hv.<hypervisorId>.…` (including the `sim.…` controls) for `hv`. */
export function serveHypervisor(service: Service, hv: SimHypervisor, log: Logger, hooks: ServeHooks = {}): void {
  const id = hv.hypervisorId;
  serveEndpoint(service, log, {
    name: "inventory",
    subject: hypervisorSubjects.inventory(id),
    request: InventoryRequest,
    response: InventoryResponse,
    handler: async () => ({ inventory: await hv.inventory() }),
  }, hooks);
  serveEndpoint(service, log, {
    name: "snapshot-create",
    subject: hypervisorSubjects.snapshotCreate(id),
    request: SnapshotCreateRequest,
    response: SnapshotCreateResponse,
    handler: async (req) => ({ snapshot: await hv.createSnapshot(req) }),
  }, hooks);
  serveEndpoint(service, log, {
    name: "snapshot-remove",
    subject: hypervisorSubjects.snapshotRemove(id),
    request: SnapshotRemoveRequest,
    response: SnapshotRemoveResponse,
    handler: (req) => hv.removeSnapshot(req),
  }, hooks);
  serveEndpoint(service, log, {
    name: "snapshot-list",
    subject: hypervisorSubjects.snapshotList(id),
    request: SnapshotListRequest,
    response: SnapshotListResponse,
    handler: async (req) => ({ snapshots: hv.listSnapshots(req.vmId) }),
  }, hooks);
  serveEndpoint(service, log, {
    name: "vm-create",
    subject: hypervisorSubjects.vmCreate(id),
    request: VmCreateRequest,
    response: VmCreateResponse,
    handler: (req) => hv.createVm(req),
  }, hooks);
  serveEndpoint(service, log, {
    name: "sim-workload",
    subject: hypervisorSubjects.sim(id, SimVerb.workload),
    request: SimWorkloadRequest,
    response: SimWorkloadResponse,
    handler: async (req) => hv.setWorkload(req.vmId, req.bytesPerSec, req.ioSizeBytes),
  }, hooks);
  serveEndpoint(service, log, {
    name: "sim-snapshotImages",
    subject: hypervisorSubjects.sim(id, SimVerb.snapshotImages),
    request: SimSnapshotImagesRequest,
    response: SimSnapshotImagesResponse,
    handler: async (req) => ({ images: hv.snapshotImages(req.vmId, req.snapshotId) }),
  }, hooks);
  serveEndpoint(service, log, {
    name: "sim-status",
    subject: hypervisorSubjects.sim(id, SimVerb.status),
    request: SimStatusRequest,
    response: SimStatusResponse,
    handler: async () => hv.status(),
  }, hooks);
}
