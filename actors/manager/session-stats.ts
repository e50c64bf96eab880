import {
  SessionKind,
  SessionResult,
  TaskState,
  emptyTaskStats,
  type SessionStats,
  type TaskRecord,
  type TaskStats,
  type VmRecord,
} from "../../protocol/mod.js";

const TASK_STAT_FIELDS = [
  "processedBytes",
  "readBytes",
  "dataBytes",
  "transferredBytes",
  "storedBytes",
  "blocks",
  "zeroBlocksSkipped",
  "dedupedBlocks",
  "durationMs",
] as const satisfies ReadonlyArray<keyof TaskStats>;

/**
 * Combines what the two movers of a task report. Each field is a counter that only grows, and
 * a field is either measured by one side only (stored bytes: receiver) or by both (blocks), so
 * the larger value per field is the most recent truth.
 */
export function mergeTaskStats(...reports: ReadonlyArray<TaskStats | undefined>): TaskStats {
  const merged = emptyTaskStats();
  for (const report of reports) {
    if (!report) continue;
    for (const field of TASK_STAT_FIELDS) merged[field] = Math.max(merged[field], report[field]);
  }
  return merged;
}

/** Session totals: sums over tasks, with the session's own duration, rate and compression ratio. */
export function aggregateSessionStats(tasks: ReadonlyArray<Pick<TaskRecord, "stats">>, durationMs: number): SessionStats {
  const sums = emptyTaskStats();
  for (const task of tasks) {
    for (const field of TASK_STAT_FIELDS) {
      if (field !== "durationMs") sums[field] += task.stats[field];
    }
  }
  const duration = Math.max(0, Math.round(durationMs));
  return {
    ...sums,
    durationMs: duration,
    processingRateBytesPerSec: duration > 0 ? Math.round((sums.processedBytes * 1000) / duration) : 0,
    compressionRatio: sums.transferredBytes > 0 ? sums.dataBytes / sums.transferredBytes : 0,
  };
}

export interface ResultInput {
  kind: SessionKind;
  /** Set when the session could not run at all, or was stopped. */
  error?: unknown;
  warnings: readonly string[];
  vms: ReadonlyArray<Pick<VmRecord, "restorePointId" | "warnings">>;
  tasks: ReadonlyArray<Pick<TaskRecord, "state">>;
}

/**
 * design.md, session state machine. Backup: failed when the job could not run or a VM has no
 * restore point; warning when every VM has one but something was degraded. Restore and verify:
 * failed when any task did not succeed.
 */
export function computeSessionResult(input: ResultInput): SessionResult {
  if (input.error !== undefined) return SessionResult.Failed;
  const warned = input.warnings.length > 0 || input.vms.some((vm) => vm.warnings.length > 0);
  if (input.kind === SessionKind.Backup) {
    if (input.vms.length === 0) return SessionResult.Failed;
    if (input.vms.some((vm) => vm.restorePointId === undefined)) return SessionResult.Failed;
  } else {
    if (input.tasks.length === 0) return SessionResult.Failed;
    if (input.tasks.some((task) => task.state !== TaskState.Succeeded)) return SessionResult.Failed;
  }
  return warned ? SessionResult.Warning : SessionResult.Success;
}

/** Bytes for log lines an operator reads: `37.5 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}
