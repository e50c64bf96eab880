import { describe, expect, it } from "vitest";
import { guestProcessingFor } from "../../actors/manager/backup-session.js";
import { aggregateSessionStats, computeSessionResult, formatBytes, mergeTaskStats } from "../../actors/manager/session-stats.js";
import { taskIdFor } from "../../actors/manager/task-plan.js";
import { parseTrigger } from "../../actors/manager/trigger-consumer.js";
import { verifyRejection } from "../../actors/manager/verify-session.js";
import {
  ErrorCode,
  FerryError,
  Id,
  JobSpec,
  JobTrigger,
  VerifyRequest,
  encode,
  emptyTaskStats,
  packValue,
  triggerSubjects,
  type TaskStats,
} from "../../protocol/mod.js";

function stats(partial: Partial<TaskStats>): TaskStats {
  return { ...emptyTaskStats(), ...partial };
}

describe("merging the two movers' task stats", () => {
  it("takes each counter from whichever mover measured more of it", () => {
    const sender = stats({ processedBytes: 8, readBytes: 8, dataBytes: 6, transferredBytes: 3, blocks: 6, zeroBlocksSkipped: 2, durationMs: 900 });
    const receiver = stats({ dataBytes: 6, transferredBytes: 3, storedBytes: 2, blocks: 6, dedupedBlocks: 2, durationMs: 1000 });
    expect(mergeTaskStats(sender, receiver)).toEqual({
      processedBytes: 8,
      readBytes: 8,
      dataBytes: 6,
      transferredBytes: 3,
      storedBytes: 2,
      blocks: 6,
      zeroBlocksSkipped: 2,
      dedupedBlocks: 2,
      durationMs: 1000,
    });
  });

  it("gives zeroes when neither mover reported yet", () => {
    expect(mergeTaskStats(undefined, undefined)).toEqual(emptyTaskStats());
  });
});

describe("session stats", () => {
  it("sum the tasks and derive rate and compression ratio from the session's own duration", () => {
    const session = aggregateSessionStats(
      [
        { stats: stats({ processedBytes: 4_000, dataBytes: 3_000, transferredBytes: 1_000, blocks: 3, durationMs: 1_500 }) },
        { stats: stats({ processedBytes: 6_000, dataBytes: 1_000, transferredBytes: 1_000, blocks: 1, zeroBlocksSkipped: 5, durationMs: 1_800 }) },
      ],
      2_000,
    );
    expect(session.processedBytes).toBe(10_000);
    expect(session.dataBytes).toBe(4_000);
    expect(session.transferredBytes).toBe(2_000);
    expect(session.blocks).toBe(4);
    expect(session.zeroBlocksSkipped).toBe(5);
    expect(session.durationMs).toBe(2_000);
    expect(session.processingRateBytesPerSec).toBe(5_000);
    expect(session.compressionRatio).toBe(2);
  });

  it("report no rate and no ratio instead of dividing by zero", () => {
    const session = aggregateSessionStats([{ stats: stats({ processedBytes: 100 }) }], 0);
    expect(session.processingRateBytesPerSec).toBe(0);
    expect(session.compressionRatio).toBe(0);
  });
});

describe("byte counts in log lines", () => {
  it("use binary units", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(36 * 1024 * 1024)).toBe("36.0 MiB");
    expect(formatBytes(1536)).toBe("1.5 KiB");
  });
});

describe("session result", () => {
  const vm = (restorePointId?: string, warnings: string[] = []) => ({ restorePointId, warnings });

  it("is success when every VM of a backup has a restore point and nothing warned", () => {
    expect(computeSessionResult({ kind: "backup", warnings: [], vms: [vm("rp-1"), vm("rp-2")], tasks: [] })).toBe("success");
  });

  it("is warning when a VM's restore point is degraded or a selector matched nothing", () => {
    expect(computeSessionResult({ kind: "backup", warnings: [], vms: [vm("rp-1", ["crash-consistent"])], tasks: [] })).toBe("warning");
    expect(computeSessionResult({ kind: "backup", warnings: ["selector matched no VM"], vms: [vm("rp-1")], tasks: [] })).toBe("warning");
  });

  it("is failed when any VM of a backup has no restore point, even with others fine", () => {
    expect(computeSessionResult({ kind: "backup", warnings: [], vms: [vm("rp-1"), vm()], tasks: [] })).toBe("failed");
  });

  it("is failed when the session could not run or was stopped", () => {
    const error = { code: ErrorCode.NotFound, message: "job j not found", retryable: false };
    expect(computeSessionResult({ kind: "backup", error, warnings: [], vms: [vm("rp-1")], tasks: [] })).toBe("failed");
    expect(computeSessionResult({ kind: "backup", warnings: [], vms: [], tasks: [] })).toBe("failed");
  });

  it("follows the tasks for restore and verify sessions", () => {
    expect(computeSessionResult({ kind: "restore", warnings: [], vms: [], tasks: [{ state: "succeeded" }, { state: "succeeded" }] })).toBe("success");
    expect(computeSessionResult({ kind: "verify", warnings: [], vms: [], tasks: [{ state: "succeeded" }, { state: "failed" }] })).toBe("failed");
    expect(computeSessionResult({ kind: "verify", warnings: [], vms: [], tasks: [] })).toBe("failed");
  });
});

describe("task ids", () => {
  it("name the VM and disk and differ between sessions, since release and cancel know only the task id", () => {
    const first = taskIdFor("backup-20260101-000000-aaaaaaaaaaaa", "vm-1", "disk-0");
    const second = taskIdFor("backup-20260101-000001-bbbbbbbbbbbb", "vm-1", "disk-0");
    expect(first).toMatch(/^vm-1-disk-0-[0-9a-f]{8}$/);
    expect(second).not.toBe(first);
    expect(taskIdFor("backup-20260101-000000-aaaaaaaaaaaa", "vm-1", "disk-0")).toBe(first);
  });

  it("stay valid Ids when the parts are too long, and unique within a session", () => {
    const long = taskIdFor("s", "v".repeat(100), "d".repeat(100));
    expect(Id.safeParse(long).success).toBe(true);
    const taken = new Set([taskIdFor("s", "a", "b-c")]);
    const second = taskIdFor("s", "a-b", "c", taken);
    expect(taken.has(second)).toBe(false);
    expect(Id.safeParse(second).success).toBe(true);
  });
});

describe("guest processing per VM", () => {
  const job = (enabled: boolean, vms: Array<Record<string, unknown>>) => JobSpec.parse({ id: "j", hypervisor: "h", repository: "r", vms, guestProcessing: { enabled } });
  const vm = { id: "vm-1", name: "db", tags: ["prod"] };

  it("follows the job default when no matching selector overrides it", () => {
    expect(guestProcessingFor(job(true, [{ id: "vm-1" }]), vm)).toBe(true);
    expect(guestProcessingFor(job(false, [{ name: "db" }]), vm)).toBe(false);
  });

  it("follows a matching selector's override", () => {
    expect(guestProcessingFor(job(true, [{ tag: "prod", guestProcessing: false }]), vm)).toBe(false);
    expect(guestProcessingFor(job(false, [{ name: "db", guestProcessing: true }]), vm)).toBe(true);
    expect(guestProcessingFor(job(false, [{ name: "other", guestProcessing: true }]), vm)).toBe(false);
    expect(guestProcessingFor(job(false, [{ name: "d*", guestProcessing: true }]), vm)).toBe(true);
    expect(guestProcessingFor(job(false, [{ name: "x*", guestProcessing: true }]), vm)).toBe(false);
  });
});

describe("verify outcomes", () => {
  it("fail the task as corrupt when any block is corrupt", () => {
    const error = verifyRejection({ kind: "verify", blocksChecked: 10, corruptBlocks: 2, corruptBlockIndexes: [3, 7] }, "t");
    expect(error).toBeInstanceOf(FerryError);
    expect(error?.code).toBe(ErrorCode.Corrupt);
    expect(error?.message).toContain("2 of 10");
  });

  it("pass when every block checked out", () => {
    expect(verifyRejection({ kind: "verify", blocksChecked: 10, corruptBlocks: 0, corruptBlockIndexes: [] }, "t")).toBeUndefined();
  });
});

describe("parsing triggers", () => {
  const trigger = { jobId: "nightly", requestId: "r1", requestedBy: "test", requestedAt: 1 };

  it("tells the kind by subject", () => {
    expect(parseTrigger(triggerSubjects.job("nightly"), encode(JobTrigger, trigger)).kind).toBe("backup");
    const verify = encode(VerifyRequest, { requestId: "r", requestedBy: "t", requestedAt: 1, repositoryId: "repo", restorePointId: "rp" });
    expect(parseTrigger(triggerSubjects.verify(), verify).kind).toBe("verify");
  });

  it("rejects garbage, unknown versions and a job trigger on another job's subject", () => {
    expect(() => parseTrigger(triggerSubjects.job("nightly"), Buffer.from("garbage"))).toThrow(FerryError);
    const future = packValue({ ...trigger, v: 99, type: JobTrigger.type });
    expect(() => parseTrigger(triggerSubjects.job("nightly"), future)).toThrow(/version/);
    expect(() => parseTrigger(triggerSubjects.job("weekly"), encode(JobTrigger, trigger))).toThrow(/nightly/);
  });
});
