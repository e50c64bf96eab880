import type { Session } from "../lib/session-store.js";
import type { RestorePoint, SessionStats, TaskRecord, TaskStats } from "../protocol/mod.js";
import { formatBytes, formatDuration, formatRate, formatRatio, formatTime, renderTable } from "./format.js";

/** Readable renderings of sessions and restore points, and their `--json` summaries. */

/** Wall time of a session: start (or creation) to end (or now while it runs). */
export function sessionDurationMs(session: Session, now = Date.now()): number {
  return Math.max(0, (session.endedAt ?? now) - (session.startedAt ?? session.createdAt));
}

export function taskDurationMs(task: TaskRecord, now = Date.now()): number {
  if (task.stats.durationMs > 0) return task.stats.durationMs;
  if (task.startedAt === undefined) return 0;
  return Math.max(0, (task.endedAt ?? now) - task.startedAt);
}

/** Raw bytes sent per byte transferred; 0 when nothing was sent. */
export function compressionRatioOf(stats: Pick<TaskStats, "dataBytes" | "transferredBytes">): number {
  return stats.transferredBytes > 0 ? stats.dataBytes / stats.transferredBytes : 0;
}

export function rateOf(bytes: number, durationMs: number): number {
  return durationMs > 0 ? (bytes * 1000) / durationMs : 0;
}

/** The session's stats as the `--json` outputs give them, with the derived figures filled in. */
export function sessionStatsJson(session: Session): SessionStats {
  const durationMs = sessionDurationMs(session);
  return {
    ...session.stats,
    compressionRatio: session.stats.compressionRatio || compressionRatioOf(session.stats),
    processingRateBytesPerSec: session.stats.processingRateBytesPerSec || rateOf(session.stats.processedBytes, durationMs),
  };
}

/** A compact summary for `--json` lists and the demo's output. */
export function sessionSummaryJson(session: Session) {
  return {
    id: session.id,
    kind: session.kind,
    jobId: session.jobId,
    state: session.state,
    result: session.result,
    requestedAt: session.requestedAt,
    startedAt: session.startedAt,
    endedAt: session.endedAt,
    durationMs: sessionDurationMs(session),
    stats: sessionStatsJson(session),
    vms: session.vms,
    warnings: session.warnings,
    error: session.error,
  };
}

/** One line per stat, as in `processed 768 MiB at 62 MiB/s, read 500 MiB, …`. */
function statsLine(stats: TaskStats, durationMs: number): string {
  const parts = [
    `processed ${formatBytes(stats.processedBytes)} at ${formatRate(rateOf(stats.processedBytes, durationMs))}`,
    `read ${formatBytes(stats.readBytes)}`,
    `transferred ${formatBytes(stats.transferredBytes)}`,
    `zero blocks skipped ${stats.zeroBlocksSkipped}`,
    `deduped blocks ${stats.dedupedBlocks}`,
    `compression ${formatRatio(compressionRatioOf(stats))}`,
  ];
  return parts.join(", ");
}

function vmNameOf(session: Session, vmId: string): string {
  return session.vms.find((v) => v.vmId === vmId)?.name ?? vmId;
}

/** The full readable report of one session (`ferry session show`, the end of `--wait`). */
export function renderSessionReport(session: Session): string {
  const durationMs = sessionDurationMs(session);
  const lines: string[] = [];
  const job = session.jobId ? `, job ${session.jobId}${session.jobName ? ` (${session.jobName})` : ""}` : "";
  lines.push(`Session ${session.id} (${session.kind}${job})`);
  lines.push(`  result     ${session.result ?? `(${session.state})`}`);
  lines.push(`  requested  ${formatTime(session.requestedAt)} by ${session.requestedBy}`);
  lines.push(`  started    ${formatTime(session.startedAt)}   ended ${formatTime(session.endedAt)}`);
  lines.push(`  duration   ${formatDuration(durationMs)}`);
  lines.push(`  stats      ${statsLine(session.stats, durationMs)}`);
  if (session.totalBytes > 0 && session.state !== "completed") {
    lines.push(`  progress   ${formatBytes(session.stats.processedBytes)} of ${formatBytes(session.totalBytes)}`);
  }
  if (session.error) lines.push(`  error      ${session.error.code}: ${session.error.message}`);
  for (const warning of session.warnings) lines.push(`  warning    ${warning}`);

  if (session.vms.length > 0) {
    lines.push("", "VMs");
    const rows = session.vms.map((vm) => [vm.name, vm.vmId, vm.state, vm.consistency ?? "-", vm.restorePointId ?? "-"]);
    lines.push(indent(renderTable(["name", "id", "state", "consistency", "restore point"], rows)));
    for (const vm of session.vms) {
      for (const warning of vm.warnings) lines.push(`  ${vm.name}: warning: ${warning}`);
      if (vm.error) lines.push(`  ${vm.name}: error: ${vm.error.code}: ${vm.error.message}`);
    }
  }

  if (session.tasks.length > 0) {
    lines.push("", "Tasks");
    const rows = session.tasks.map((task) => {
      const ms = taskDurationMs(task);
      return [
        vmNameOf(session, task.vmId),
        task.diskLabel || task.diskId,
        task.state,
        task.proxyId ?? "-",
        formatBytes(task.stats.processedBytes),
        formatBytes(task.stats.readBytes),
        formatBytes(task.stats.transferredBytes),
        String(task.stats.zeroBlocksSkipped),
        String(task.stats.dedupedBlocks),
        formatRatio(compressionRatioOf(task.stats)),
        formatRate(rateOf(task.stats.processedBytes, ms)),
        formatDuration(ms),
      ];
    });
    const headers = ["vm", "disk", "state", "proxy", "processed", "read", "transferred", "zero", "dedup", "ratio", "rate", "time"];
    lines.push(indent(renderTable(headers, rows, { alignRight: headers.slice(4) })));
    for (const task of session.tasks) {
      if (task.outputPath) lines.push(`  ${vmNameOf(session, task.vmId)}/${task.diskId}: written to ${task.outputPath}`);
      if (task.error) lines.push(`  ${vmNameOf(session, task.vmId)}/${task.diskId}: error: ${task.error.code}: ${task.error.message}`);
    }
  }
  return lines.join("\n");
}

export function renderSessionList(sessions: readonly Session[]): string {
  if (sessions.length === 0) return "no sessions";
  const rows = sessions.map((s) => [
    s.id,
    s.kind,
    s.jobId ?? "-",
    s.state,
    s.result ?? "-",
    formatTime(s.requestedAt),
    formatDuration(sessionDurationMs(s)),
    formatBytes(s.stats.processedBytes),
    `${s.vms.filter((v) => v.state === "succeeded" || v.state === "failed").length}/${s.vms.length}`,
  ]);
  return renderTable(["id", "kind", "job", "state", "result", "requested", "duration", "processed", "vms"], rows, { alignRight: ["duration", "processed"] });
}

export function renderRestorePointList(points: readonly RestorePoint[]): string {
  if (points.length === 0) return "no restore points";
  const rows = points.map((rp) => [
    rp.id,
    rp.vm.name,
    rp.jobId,
    formatTime(rp.createdAt),
    rp.consistency,
    rp.disks.map((d) => d.diskId).join(","),
    formatBytes(rp.disks.reduce((sum, d) => sum + d.sizeBytes, 0)),
    String(rp.warnings.length),
  ]);
  return renderTable(["id", "vm", "job", "created", "consistency", "disks", "size", "warnings"], rows, { alignRight: ["size", "warnings"] });
}

function indent(text: string, by = "  "): string {
  return text
    .split("\n")
    .map((line) => by + line)
    .join("\n");
}
