import { z } from "zod";
import { ByteCount, EpochMs, Id } from "./common.js";
import { defineMessage } from "./codec.js";
import { WireErrorSchema } from "./errors.js";
import { SessionKind } from "./job.js";
import { subject, subjectPattern } from "./subject.js";

/**
 * Session state lives in the KV bucket `ferry-sessions` under `session.<sessionId>` and is only
 * ever changed with compare-and-set on the key's revision (see lib/session-store).
 */
export const SessionKeys = {
  session: (sessionId: string) => `session.${Id.parse(sessionId)}`,
  all: "session.>",
} as const;

/** pending → running → completed; `stopping` while a stop was requested and tasks wind down. */
export const SessionState = { Pending: "pending", Running: "running", Stopping: "stopping", Completed: "completed" } as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

export const SessionResult = { Success: "success", Warning: "warning", Failed: "failed" } as const;
export type SessionResult = (typeof SessionResult)[keyof typeof SessionResult];

/**
 * pending → queued (waiting for slots) → assigned (proxy and repository reserved) → running →
 * succeeded | failed | canceled. Terminal states never change again.
 */
export const TaskState = {
  Pending: "pending",
  Queued: "queued",
  Assigned: "assigned",
  Running: "running",
  Succeeded: "succeeded",
  Failed: "failed",
  Canceled: "canceled",
} as const;
export type TaskState = (typeof TaskState)[keyof typeof TaskState];
export const TERMINAL_TASK_STATES: ReadonlySet<TaskState> = new Set([TaskState.Succeeded, TaskState.Failed, TaskState.Canceled]);

export const TaskStats = z.object({
  /** Disk bytes covered so far, zero and skipped blocks included. */
  processedBytes: ByteCount.default(0),
  /** Bytes read from the source (the snapshot for a backup, the repository for a restore). */
  readBytes: ByteCount.default(0),
  /** Raw size of the non-zero blocks that were sent. */
  dataBytes: ByteCount.default(0),
  /** Payload bytes that crossed the data channel (compressed). */
  transferredBytes: ByteCount.default(0),
  /** Bytes newly written to the repository (blocks it did not hold yet). */
  storedBytes: ByteCount.default(0),
  blocks: z.number().int().nonnegative().default(0),
  zeroBlocksSkipped: z.number().int().nonnegative().default(0),
  /** Blocks the repository already held (stored once). */
  dedupedBlocks: z.number().int().nonnegative().default(0),
  durationMs: z.number().int().nonnegative().default(0),
});
export type TaskStats = z.infer<typeof TaskStats>;

export function emptyTaskStats(): TaskStats {
  return TaskStats.parse({});
}

export const TaskRecord = z.object({
  id: Id,
  kind: z.enum(["backup", "restore", "verify"]),
  vmId: Id,
  vmName: z.string(),
  diskId: Id,
  diskLabel: z.string(),
  sizeBytes: ByteCount,
  state: z.enum(Object.values(TaskState) as [TaskState, ...TaskState[]]),
  attempt: z.number().int().nonnegative().default(0),
  proxyId: Id.optional(),
  targetMoverId: Id.optional(),
  repositoryId: Id.optional(),
  restorePointId: Id.optional(),
  /** Restore to file: where the disk was written. */
  outputPath: z.string().optional(),
  stats: TaskStats,
  error: WireErrorSchema.optional(),
  queuedAt: EpochMs.optional(),
  startedAt: EpochMs.optional(),
  endedAt: EpochMs.optional(),
});
export type TaskRecord = z.infer<typeof TaskRecord>;

export const VmRecord = z.object({
  vmId: Id,
  name: z.string(),
  state: z.enum(["pending", "running", "succeeded", "failed"]),
  restorePointId: Id.optional(),
  repositoryId: Id.optional(),
  snapshotId: Id.optional(),
  /** application: quiesced by the guest processor; crash: snapshot without quiescing. */
  consistency: z.enum(["application", "crash"]).optional(),
  warnings: z.array(z.string()).default([]),
  error: WireErrorSchema.optional(),
});
export type VmRecord = z.infer<typeof VmRecord>;

export const SessionStats = TaskStats.extend({
  /** processedBytes per second of session duration. */
  processingRateBytesPerSec: z.number().nonnegative().default(0),
  /** dataBytes / transferredBytes. */
  compressionRatio: z.number().nonnegative().default(0),
});
export type SessionStats = z.infer<typeof SessionStats>;

export const SessionRecord = defineMessage("session.record", {
  id: Id,
  kind: z.enum(Object.values(SessionKind) as [SessionKind, ...SessionKind[]]),
  jobId: Id.optional(),
  jobName: z.string().optional(),
  requestId: z.string(),
  requestedBy: z.string(),
  requestedAt: EpochMs,
  /** The manager instance that runs the session. */
  owner: z.string(),
  state: z.enum(Object.values(SessionState) as [SessionState, ...SessionState[]]),
  result: z.enum(Object.values(SessionResult) as [SessionResult, ...SessionResult[]]).optional(),
  createdAt: EpochMs,
  startedAt: EpochMs.optional(),
  endedAt: EpochMs.optional(),
  updatedAt: EpochMs,
  vms: z.array(VmRecord).default([]),
  tasks: z.array(TaskRecord).default([]),
  stats: SessionStats,
  /** Disk bytes the session will process in all, for progress. */
  totalBytes: ByteCount.default(0),
  warnings: z.array(z.string()).default([]),
  error: WireErrorSchema.optional(),
});

/**
 * Events: `ferry.evt.<role>.<sessionId>.…`, captured by FERRY_EVENTS.
 * Each role publishes only under its own token (mgr, src, tgt), which keeps permissions tight.
 */
export const eventSubjects = {
  /** `ferry.evt.mgr.<sessionId>.log`: the session's log as the operator reads it. */
  sessionLog: (sessionId: string) => subject("evt", "mgr", sessionId, "log"),
  /** `ferry.evt.mgr.<sessionId>.ended`: the final session record, once. */
  sessionEnded: (sessionId: string) => subject("evt", "mgr", sessionId, "ended"),
  /** `ferry.evt.<src|tgt>.<sessionId>.<taskId>.<progress|done|failed>` */
  task: (role: MoverRole, sessionId: string, taskId: string, what: TaskEventKind) =>
    subject("evt", role, sessionId, taskId, what),
  /** `ferry.evt.src.<sessionId>.>` and `ferry.evt.tgt.<sessionId>.>`: the movers' task events. */
  moverTasks: (sessionId: string) => [subjectPattern("evt", "src", sessionId, ">"), subjectPattern("evt", "tgt", sessionId, ">")],
  /** `ferry.evt.>` */
  all: () => subjectPattern("evt", ">"),
} as const;

export const MoverRole = { Source: "src", Target: "tgt" } as const;
export type MoverRole = (typeof MoverRole)[keyof typeof MoverRole];
export const TaskEventKind = { Progress: "progress", Done: "done", Failed: "failed" } as const;
export type TaskEventKind = (typeof TaskEventKind)[keyof typeof TaskEventKind];

export const SessionLogEvent = defineMessage("event.session.log", {
  sessionId: Id,
  at: EpochMs,
  level: z.enum(["info", "warning", "error"]),
  message: z.string(),
  vmId: Id.optional(),
  taskId: Id.optional(),
});

export const TaskProgressEvent = defineMessage("event.task.progress", {
  sessionId: Id,
  taskId: Id,
  moverId: Id,
  at: EpochMs,
  stats: TaskStats,
});

/** What a finished task produced, by task kind. */
export const TaskOutcome = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("backup"),
    restorePointId: Id,
    diskId: Id,
    /** BLAKE3 of the disk manifest as written, for the restore point's record. */
    manifestDigest: z.string(),
  }),
  z.object({ kind: z.literal("restore"), path: z.string(), sizeBytes: ByteCount }),
  z.object({
    kind: z.literal("verify"),
    blocksChecked: z.number().int().nonnegative(),
    corruptBlocks: z.number().int().nonnegative(),
    /** First few corrupt block indexes, for the report. */
    corruptBlockIndexes: z.array(z.number().int().nonnegative()),
  }),
]);
export type TaskOutcome = z.infer<typeof TaskOutcome>;

export const TaskDoneEvent = defineMessage("event.task.done", {
  sessionId: Id,
  taskId: Id,
  moverId: Id,
  at: EpochMs,
  stats: TaskStats,
  outcome: TaskOutcome,
});

export const TaskFailedEvent = defineMessage("event.task.failed", {
  sessionId: Id,
  taskId: Id,
  moverId: Id,
  at: EpochMs,
  stats: TaskStats,
  error: WireErrorSchema,
});

export const SessionEndedEvent = defineMessage("event.session.ended", {
  sessionId: Id,
  at: EpochMs,
  result: z.enum(Object.values(SessionResult) as [SessionResult, ...SessionResult[]]),
});

/**
 * The manager's own requests, per instance because a session is run by one manager (its `owner`):
 * `ferry.svc.manager.<managerId>.<verb>`.
 */
export const managerSubjects = {
  /** `ferry.svc.manager.<managerId>.stop`: stop a running session; tasks are canceled, snapshots removed. */
  stop: (managerId: string) => subject("svc", "manager", managerId, "stop"),
  /** `ferry.svc.manager.<managerId>.active`: the sessions this manager runs now. */
  active: (managerId: string) => subject("svc", "manager", managerId, "active"),
  /** `ferry.evt.mgr.trigger.rejected`: a trigger the manager could not accept (malformed, unknown version). */
  triggerRejected: () => subject("evt", "mgr", "trigger", "rejected"),
} as const;

export const StopSessionRequest = defineMessage("manager.stop.req", { sessionId: Id, reason: z.string().max(500).default("stopped by operator") });
export const StopSessionResponse = defineMessage("manager.stop.res", { sessionId: Id, stopping: z.boolean() });
export const ActiveSessionsRequest = defineMessage("manager.active.req", {});
export const ActiveSessionsResponse = defineMessage("manager.active.res", { managerId: z.string(), sessions: z.array(Id) });

export const TriggerRejectedEvent = defineMessage("event.trigger.rejected", {
  at: EpochMs,
  subject: z.string(),
  streamSeq: z.number().int().nonnegative(),
  error: WireErrorSchema,
});
