import { z } from "zod";
import { BlockSize, DEFAULT_BLOCK_SIZE, EpochMs, Id } from "./common.js";
import { defineMessage } from "./codec.js";

/**
 * The configuration database is the KV bucket `ferry-config` (see Buckets.config).
 * Keys: `job.<jobId>`, `proxy.<proxyId>`, `repository.<repositoryId>`, `hypervisor.<hypervisorId>`.
 */
export const ConfigKeys = {
  job: (jobId: string) => `job.${Id.parse(jobId)}`,
  proxy: (proxyId: string) => `proxy.${Id.parse(proxyId)}`,
  repository: (repositoryId: string) => `repository.${Id.parse(repositoryId)}`,
  hypervisor: (hypervisorId: string) => `hypervisor.${Id.parse(hypervisorId)}`,
  /** Key filters for listing one kind of record. */
  prefix: { job: "job.>", proxy: "proxy.>", repository: "repository.>", hypervisor: "hypervisor.>" },
} as const;

/** Selects VMs of a job; exactly one of id, name, tag. `guestProcessing` overrides the job default. */
export const VmSelector = z
  .object({
    id: Id.optional(),
    name: z.string().min(1).optional(),
    tag: z.string().min(1).optional(),
    guestProcessing: z.boolean().optional(),
  })
  .refine((s) => [s.id, s.name, s.tag].filter((x) => x !== undefined).length === 1, {
    message: "give exactly one of id, name, tag",
  });
export type VmSelector = z.infer<typeof VmSelector>;

export const GuestProcessingSettings = z.object({
  /** Application-aware processing for every selected VM unless a selector says otherwise. */
  enabled: z.boolean().default(false),
  /** How long applications may stay frozen; the guest thaws itself after this. */
  freezeTimeoutMs: z.number().int().min(1000).max(600_000).default(20_000),
  /** `warn`: a failed quiesce falls back to a crash-consistent backup with a warning; `fail`: the VM fails. */
  onFailure: z.enum(["warn", "fail"]).default("warn"),
});

/** A backup job as stored in the configuration database (and written by operators in YAML/JSON). */
export const JobSpec = z.object({
  id: Id,
  name: z.string().min(1).max(200).optional(),
  description: z.string().max(2000).optional(),
  hypervisor: Id,
  repository: Id,
  vms: z.array(VmSelector).min(1),
  blockSize: BlockSize.default(DEFAULT_BLOCK_SIZE),
  compression: z.enum(["snappy", "none"]).default("snappy"),
  guestProcessing: GuestProcessingSettings.default({ enabled: false, freezeTimeoutMs: 20_000, onFailure: "warn" }),
  /** Higher runs first when tasks queue for slots. */
  priority: z.number().int().min(0).max(100).default(50),
  /** Restrict the job to these proxies (source movers); empty means any. */
  proxies: z.array(Id).default([]),
  /** Bytes per second a task may read; 0 means unthrottled. */
  throttleBytesPerSec: z.number().int().nonnegative().default(0),
});
export type JobSpec = z.infer<typeof JobSpec>;
export type JobSpecInput = z.input<typeof JobSpec>;

export const JobRecord = defineMessage("config.job", {
  job: JobSpec,
  createdAt: EpochMs,
  updatedAt: EpochMs,
});

export const ProxyRecord = defineMessage("config.proxy", {
  id: Id,
  /** Concurrent tasks this proxy runs (task slots). */
  maxTasks: z.number().int().min(1).max(256),
  description: z.string().optional(),
});

export const RepositoryRecord = defineMessage("config.repository", {
  id: Id,
  /** Directory of the repository on the target mover's host. */
  path: z.string().min(1),
  /** Concurrent write/read tasks the repository accepts (task slots). */
  maxTasks: z.number().int().min(1).max(256),
  description: z.string().optional(),
});

export const HypervisorRecord = defineMessage("config.hypervisor", {
  id: Id,
  kind: z.enum(["simulator"]),
  description: z.string().optional(),
});
