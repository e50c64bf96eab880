import { z } from "zod";
import { ByteCount, EpochMs, Id } from "./common.js";
import { defineMessage } from "./codec.js";
import { subject, subjectPattern } from "./subject.js";

/**
 * The scheduler's service: `ferry.svc.scheduler.<verb>`. Movers announce themselves with
 * heartbeats on `ferry.ann.<src|tgt>.<moverId>.heartbeat`; a starting scheduler asks for them at
 * once on `ferry.ann.scheduler.discover` instead of waiting a heartbeat interval.
 */
export const schedulerSubjects = {
  /** `ferry.svc.scheduler.assign` */
  assign: () => subject("svc", "scheduler", "assign"),
  /** `ferry.svc.scheduler.release` */
  release: () => subject("svc", "scheduler", "release"),
  /** `ferry.svc.scheduler.status` */
  status: () => subject("svc", "scheduler", "status"),
  /** `ferry.ann.scheduler.discover` */
  discover: () => subject("ann", "scheduler", "discover"),
  /** `ferry.ann.<src|tgt>.<moverId>.heartbeat` */
  heartbeat: (role: "src" | "tgt", moverId: string) => subject("ann", role, moverId, "heartbeat"),
  /** `ferry.ann.*.*.heartbeat` */
  allHeartbeats: () => subjectPattern("ann", "*", "*", "heartbeat"),
} as const;

export const HEARTBEAT_INTERVAL_MS = 2_000;
/** A mover not heard from for this long is offline: it gets no new tasks. */
export const MOVER_OFFLINE_AFTER_MS = 10_000;

export const MoverHeartbeat = defineMessage("ann.heartbeat", {
  moverId: Id,
  role: z.enum(["source", "target"]),
  host: z.string(),
  /** Task slots. */
  maxTasks: z.number().int().min(1),
  /** Tasks the mover is running right now; lets the scheduler reclaim slots of tasks that never started. */
  activeTasks: z.array(Id),
  /** Target movers: the repository they serve and its free space. */
  repositoryId: Id.optional(),
  freeBytes: ByteCount.optional(),
  state: z.enum(["serving", "draining"]),
  startedAt: EpochMs,
  sentAt: EpochMs,
});

export const Discover = defineMessage("ann.discover", { schedulerId: z.string(), at: EpochMs });

export const Assignment = z.object({
  taskId: Id,
  sessionId: Id,
  /** Source mover (proxy) that reads and sends (backup) or receives and writes (restore). */
  proxyId: Id.optional(),
  /** Target mover on the repository. */
  targetMoverId: Id,
  repositoryId: Id,
  assignedAt: EpochMs,
});
export type Assignment = z.infer<typeof Assignment>;

export const AssignRequest = defineMessage("scheduler.assign.req", {
  sessionId: Id,
  taskId: Id,
  /** Higher first; then by arrival. */
  priority: z.number().int().min(0).max(100).default(50),
  repositoryId: Id,
  /** Whether the task needs a proxy: verify runs on the repository alone. */
  needsProxy: z.boolean().default(true),
  /** Only these proxies; empty means any. */
  proxies: z.array(Id).default([]),
  /**
   * Hold the request up to this long waiting for free slots before answering `queued`. The caller
   * asks again with the same taskId to keep its place; a place not renewed within twice this
   * time is dropped.
   */
  waitMs: z.number().int().min(0).max(30_000).default(5_000),
});
export const AssignResponse = defineMessage("scheduler.assign.res", {
  status: z.enum(["assigned", "queued"]),
  assignment: Assignment.optional(),
  /** 1-based place in the queue when queued. */
  position: z.number().int().optional(),
  /** Why the task waits (no proxy online, all slots busy, ...). */
  reason: z.string().optional(),
});

export const ReleaseRequest = defineMessage("scheduler.release.req", { taskId: Id });
export const ReleaseResponse = defineMessage("scheduler.release.res", { released: z.boolean() });

const MoverStatus = z.object({
  moverId: Id,
  role: z.enum(["source", "target"]),
  host: z.string(),
  repositoryId: Id.optional(),
  maxTasks: z.number().int(),
  usedSlots: z.number().int(),
  online: z.boolean(),
  state: z.enum(["serving", "draining"]),
  lastSeenAt: EpochMs,
});
export const StatusRequest = defineMessage("scheduler.status.req", {});
export const StatusResponse = defineMessage("scheduler.status.res", {
  movers: z.array(MoverStatus),
  assignments: z.array(Assignment),
  queue: z.array(z.object({ taskId: Id, sessionId: Id, priority: z.number().int(), since: EpochMs })),
});
