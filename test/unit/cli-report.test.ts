import { describe, expect, it } from "vitest";
import { compressionRatioOf, renderSessionReport, sessionStatsJson } from "../../cli/report.js";
import { exitCodeFor } from "../../cli/sessions.js";
import { demoJobSpec } from "../../cli/demo-job.js";
import { SessionRecord, TaskStats, validate, PROTOCOL_VERSION } from "../../protocol/mod.js";

const stats = (over: Partial<TaskStats>) => TaskStats.parse(over);

const session = validate(SessionRecord, {
  v: PROTOCOL_VERSION,
  type: SessionRecord.type,
  id: "backup-20260101-000000-abc",
  kind: "backup",
  jobId: "daily",
  requestId: "r1",
  requestedBy: "ops@host",
  requestedAt: 1_000,
  owner: "manager",
  state: "completed",
  result: "warning",
  createdAt: 1_000,
  startedAt: 1_000,
  endedAt: 11_000,
  updatedAt: 11_000,
  vms: [
    { vmId: "vm-1", name: "sql-01", state: "succeeded", restorePointId: "rp-1", consistency: "crash", warnings: ["quiesce failed: timeout"] },
    { vmId: "vm-2", name: "web-01", state: "failed", error: { code: "io", message: "disk gone", retryable: true }, warnings: [] },
  ],
  tasks: [
    {
      id: "t1", kind: "backup", vmId: "vm-1", vmName: "sql-01", diskId: "disk-1", diskLabel: "Hard disk 1", sizeBytes: 100 << 20, state: "succeeded",
      proxyId: "proxy-1", stats: stats({ processedBytes: 100 << 20, readBytes: 80 << 20, dataBytes: 60 << 20, transferredBytes: 20 << 20, zeroBlocksSkipped: 20, dedupedBlocks: 5, durationMs: 2_000 }),
    },
  ],
  stats: stats({ processedBytes: 100 << 20, dataBytes: 60 << 20, transferredBytes: 20 << 20 }),
});

describe("session reports", () => {
  it("show the result, duration, each VM's restore point and warnings, and per-task stats", () => {
    const text = renderSessionReport(session);
    expect(text).toMatch(/result +warning/);
    expect(text).toMatch(/duration +10 s/);
    expect(text).toMatch(/sql-01 +vm-1 +succeeded +crash +rp-1/);
    expect(text).toContain("sql-01: warning: quiesce failed: timeout");
    expect(text).toContain("web-01: error: io: disk gone");
    // processed, read, transferred, zero, dedup, ratio, rate of the task
    expect(text).toMatch(/100 MiB +80 MiB +20 MiB +20 +5 +3\.00x +50 MiB\/s +2 s/);
  });

  it("derive the compression ratio and the processing rate when the record has none", () => {
    const json = sessionStatsJson(session);
    expect(json.compressionRatio).toBe(3);
    expect(json.processingRateBytesPerSec).toBe((100 << 20) / 10);
    expect(compressionRatioOf({ dataBytes: 5, transferredBytes: 0 })).toBe(0);
  });
});

describe("exit codes of waited-for sessions", () => {
  it("are 0 for success and warning, 1 for failed or unknown", () => {
    expect(exitCodeFor("success")).toBe(0);
    expect(exitCodeFor("warning")).toBe(0);
    expect(exitCodeFor("failed")).toBe(1);
    expect(exitCodeFor(undefined)).toBe(1);
  });
});

describe("the demo job", () => {
  it("selects every VM by id, vm-1 with application-aware processing", () => {
    const job = demoJobSpec({ hypervisorId: "sim-1", vms: [{ id: "vm-1", disks: [] }, { id: "vm-2", disks: [] }] } as never, "repo-1");
    expect(job).toMatchObject({ id: "demo", hypervisor: "sim-1", repository: "repo-1", vms: [{ id: "vm-1", guestProcessing: true }, { id: "vm-2" }] });
    expect(job.vms[1]!.guestProcessing).toBeUndefined();
  });
});
