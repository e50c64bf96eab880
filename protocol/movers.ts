import { z } from "zod";
import { BlockSize, ByteCount, Bytes, EpochMs, Id } from "./common.js";
import { defineMessage } from "./codec.js";
import { DiskTransport } from "./hypervisor.js";
import { subject } from "./subject.js";

/**
 * Movers are addressed per instance, since a task runs on the mover the scheduler assigned:
 * `ferry.svc.src.<moverId>.<verb>` (source mover, "proxy") and `ferry.svc.tgt.<moverId>.<verb>`
 * (target mover). Catalog requests about a repository go to any target mover serving it:
 * `ferry.svc.repo.<repositoryId>.<verb>` (queue group).
 *
 * A data channel is always opened by its receiver, which grants the credits: the target mover
 * for a backup, the source mover for a restore. The sender is then told the channel.
 */
export const sourceMoverSubjects = {
  /** `ferry.svc.src.<moverId>.backup.start` */
  backupStart: (moverId: string) => subject("svc", "src", moverId, "backup", "start"),
  /** `ferry.svc.src.<moverId>.restore.open` */
  restoreOpen: (moverId: string) => subject("svc", "src", moverId, "restore", "open"),
  /** `ferry.svc.src.<moverId>.task.cancel` */
  taskCancel: (moverId: string) => subject("svc", "src", moverId, "task", "cancel"),
} as const;

export const targetMoverSubjects = {
  /** `ferry.svc.tgt.<moverId>.backup.open` */
  backupOpen: (moverId: string) => subject("svc", "tgt", moverId, "backup", "open"),
  /** `ferry.svc.tgt.<moverId>.restore.start` */
  restoreStart: (moverId: string) => subject("svc", "tgt", moverId, "restore", "start"),
  /** `ferry.svc.tgt.<moverId>.verify.start` */
  verifyStart: (moverId: string) => subject("svc", "tgt", moverId, "verify", "start"),
  /** `ferry.svc.tgt.<moverId>.task.cancel` */
  taskCancel: (moverId: string) => subject("svc", "tgt", moverId, "task", "cancel"),
} as const;

export const repositorySubjects = {
  /** `ferry.svc.repo.<repositoryId>.info` */
  info: (repositoryId: string) => subject("svc", "repo", repositoryId, "info"),
  /** `ferry.svc.repo.<repositoryId>.rp.commit` */
  commit: (repositoryId: string) => subject("svc", "repo", repositoryId, "rp", "commit"),
  /** `ferry.svc.repo.<repositoryId>.rp.list` */
  list: (repositoryId: string) => subject("svc", "repo", repositoryId, "rp", "list"),
  /** `ferry.svc.repo.<repositoryId>.rp.get` */
  get: (repositoryId: string) => subject("svc", "repo", repositoryId, "rp", "get"),
  /** `ferry.svc.repo.<repositoryId>.rp.digests` */
  digests: (repositoryId: string) => subject("svc", "repo", repositoryId, "rp", "digests"),
} as const;

/** The data channel a receiver opened; frames go to `dataSubjects.forward(id)`. */
export const ChannelOffer = z.object({
  /** Random, unguessable channel id; later also the token binding frames to the task. */
  channelId: z.string().regex(/^[A-Za-z0-9]{16,64}$/),
  /** Frames the sender may have in flight before more credit arrives. */
  window: z.number().int().min(1).max(1024),
  /** Largest frame payload the receiver accepts (its connection's max_payload less header room). */
  maxFrameBytes: z.number().int().min(4096),
});
export type ChannelOffer = z.infer<typeof ChannelOffer>;

export const Compression = z.enum(["snappy", "none"]);

// --- source mover ---

export const BackupStartRequest = defineMessage("src.backup.start.req", {
  sessionId: Id,
  taskId: Id,
  attempt: z.number().int().nonnegative(),
  restorePointId: Id,
  diskId: Id,
  source: DiskTransport,
  sizeBytes: ByteCount,
  blockSize: BlockSize,
  compression: Compression,
  /** Bytes per second to read at most; 0 means unthrottled. */
  throttleBytesPerSec: z.number().int().nonnegative().default(0),
  channel: ChannelOffer,
});
export const TaskAccepted = defineMessage("mover.task.accepted", { taskId: Id, moverId: Id });

export const RestoreOpenRequest = defineMessage("src.restore.open.req", {
  sessionId: Id,
  taskId: Id,
  attempt: z.number().int().nonnegative(),
  /** Where the disk's bytes go: a raw image file, or a new VM's disk through its transport. */
  destination: z.discriminatedUnion("kind", [
    z.object({ kind: z.literal("file"), path: z.string().min(1), overwrite: z.boolean().default(false) }),
    z.object({ kind: z.literal("transport"), transport: DiskTransport }),
  ]),
  sizeBytes: ByteCount,
  blockSize: BlockSize,
});
export const ChannelOpened = defineMessage("mover.channel.opened", { taskId: Id, moverId: Id, channel: ChannelOffer });

export const TaskCancelRequest = defineMessage("mover.task.cancel.req", { taskId: Id, reason: z.string().default("canceled") });
export const TaskCancelResponse = defineMessage("mover.task.cancel.res", { taskId: Id, canceled: z.boolean() });

// --- target mover ---

export const BackupOpenRequest = defineMessage("tgt.backup.open.req", {
  sessionId: Id,
  taskId: Id,
  attempt: z.number().int().nonnegative(),
  jobId: Id,
  restorePointId: Id,
  vmId: Id,
  diskId: Id,
  diskLabel: z.string(),
  sizeBytes: ByteCount,
  blockSize: BlockSize,
});

export const RestoreStartRequest = defineMessage("tgt.restore.start.req", {
  sessionId: Id,
  taskId: Id,
  attempt: z.number().int().nonnegative(),
  restorePointId: Id,
  diskId: Id,
  channel: ChannelOffer,
});

export const VerifyStartRequest = defineMessage("tgt.verify.start.req", {
  sessionId: Id,
  taskId: Id,
  restorePointId: Id,
  diskId: Id,
});

// --- repository catalog ---

export const RestorePointDisk = z.object({
  diskId: Id,
  label: z.string(),
  sizeBytes: ByteCount,
  blockSize: BlockSize,
  blocks: z.number().int().nonnegative(),
  zeroBlocks: z.number().int().nonnegative(),
  manifestDigest: z.string(),
});
export type RestorePointDisk = z.infer<typeof RestorePointDisk>;

export const RestorePoint = z.object({
  id: Id,
  repositoryId: Id,
  jobId: Id,
  jobName: z.string(),
  sessionId: Id,
  vm: z.object({ id: Id, name: z.string(), hypervisorId: Id, hostId: Id, guestOs: z.string(), tags: z.array(z.string()) }),
  /** When the snapshot was taken: the point in time the restore point holds. */
  createdAt: EpochMs,
  committedAt: EpochMs,
  consistency: z.enum(["application", "crash"]),
  /** Chains later: the restore point this one is an increment of. */
  parentId: Id.optional(),
  disks: z.array(RestorePointDisk),
  warnings: z.array(z.string()),
});
export type RestorePoint = z.infer<typeof RestorePoint>;

export const RepositoryInfoRequest = defineMessage("repo.info.req", {});
export const RepositoryInfoResponse = defineMessage("repo.info.res", {
  repositoryId: Id,
  formatVersion: z.number().int(),
  restorePoints: z.number().int().nonnegative(),
  storedBlocks: z.number().int().nonnegative(),
  storedBytes: ByteCount,
  packs: z.number().int().nonnegative(),
  freeBytes: ByteCount,
});

export const CommitRestorePointRequest = defineMessage("repo.rp.commit.req", {
  restorePoint: RestorePoint.omit({ committedAt: true, disks: true, repositoryId: true }),
  /** Every disk must have a durable staged manifest with this digest, or the commit fails. */
  disks: z.array(z.object({ diskId: Id, manifestDigest: z.string() })).min(1),
});
export const CommitRestorePointResponse = defineMessage("repo.rp.commit.res", { restorePoint: RestorePoint });

export const ListRestorePointsRequest = defineMessage("repo.rp.list.req", { jobId: Id.optional(), vmId: Id.optional() });
export const ListRestorePointsResponse = defineMessage("repo.rp.list.res", { restorePoints: z.array(RestorePoint) });

export const GetRestorePointRequest = defineMessage("repo.rp.get.req", { restorePointId: Id });
export const GetRestorePointResponse = defineMessage("repo.rp.get.res", { restorePoint: RestorePoint });

export const BlockDigestsRequest = defineMessage("repo.rp.digests.req", {
  restorePointId: Id,
  diskId: Id,
  fromBlock: z.number().int().nonnegative().default(0),
  maxBlocks: z.number().int().min(1).max(16_384).default(16_384),
});
export const BlockDigestsResponse = defineMessage("repo.rp.digests.res", {
  restorePointId: Id,
  diskId: Id,
  blockSize: BlockSize,
  totalBlocks: z.number().int().nonnegative(),
  fromBlock: z.number().int().nonnegative(),
  /** 32 bytes per block from `fromBlock`; an all-zero block is 32 zero bytes. */
  digests: Bytes,
  /** Absent when this page reaches the last block. */
  nextBlock: z.number().int().nonnegative().optional(),
});
