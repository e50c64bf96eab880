import { z } from "zod";
import { ByteCount, Id } from "./common.js";
import { defineMessage } from "./codec.js";
import { subject } from "./subject.js";

export const DiskInfo = z.object({
  id: Id,
  label: z.string(),
  sizeBytes: ByteCount,
  datastoreId: Id,
});
export type DiskInfo = z.infer<typeof DiskInfo>;

export const VmInfo = z.object({
  id: Id,
  name: z.string(),
  hostId: Id,
  powerState: z.enum(["poweredOn", "poweredOff"]),
  guestOs: z.string(),
  tags: z.array(z.string()),
  /** True when a guest agent answers for this VM (application-aware processing is possible). */
  guestAgent: z.boolean(),
  disks: z.array(DiskInfo),
});
export type VmInfo = z.infer<typeof VmInfo>;

export const DatastoreInfo = z.object({ id: Id, name: z.string(), capacityBytes: ByteCount, freeBytes: ByteCount });
export const HostInfo = z.object({ id: Id, name: z.string(), datastores: z.array(Id) });
export type HostInfo = z.infer<typeof HostInfo>;

export const Inventory = z.object({
  hypervisorId: Id,
  hosts: z.array(HostInfo),
  datastores: z.array(DatastoreInfo),
  vms: z.array(VmInfo),
});
export type Inventory = z.infer<typeof Inventory>;

/**
 * Broker service subjects: `ferry.svc.broker.<verb>`. Any instance of the broker answers
 * (queue group), so the broker scales out.
 */
export const brokerSubjects = {
  /** `ferry.svc.broker.hosts` */
  hosts: () => subject("svc", "broker", "hosts"),
  /** `ferry.svc.broker.vms` */
  vms: () => subject("svc", "broker", "vms"),
  /** `ferry.svc.broker.vm` */
  vm: () => subject("svc", "broker", "vm"),
  /** `ferry.svc.broker.invalidate` */
  invalidate: () => subject("svc", "broker", "invalidate"),
} as const;

const Selector = z.object({ id: Id.optional(), name: z.string().optional(), tag: z.string().optional() });

export const ListHostsRequest = defineMessage("broker.hosts.req", {
  hypervisorId: Id,
  /** Skip the cache and ask the hypervisor. */
  refresh: z.boolean().default(false),
});
export const ListHostsResponse = defineMessage("broker.hosts.res", {
  hosts: z.array(HostInfo),
  datastores: z.array(DatastoreInfo),
  cachedAt: z.number(),
});

export const ListVmsRequest = defineMessage("broker.vms.req", {
  hypervisorId: Id,
  /** VMs matching any selector; all VMs when empty. */
  selectors: z.array(Selector).default([]),
  refresh: z.boolean().default(false),
});
export const ListVmsResponse = defineMessage("broker.vms.res", {
  vms: z.array(VmInfo),
  /** Selectors that matched no VM, so the caller can report them. */
  unmatched: z.array(Selector),
  cachedAt: z.number(),
});

export const GetVmRequest = defineMessage("broker.vm.req", {
  hypervisorId: Id,
  vmId: Id,
  refresh: z.boolean().default(false),
});
export const GetVmResponse = defineMessage("broker.vm.res", { vm: VmInfo, cachedAt: z.number() });

export const InvalidateRequest = defineMessage("broker.invalidate.req", { hypervisorId: Id.optional() });
export const InvalidateResponse = defineMessage("broker.invalidate.res", { invalidated: z.number().int() });
