import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "../../lib/rpc.js";
import { ListRestorePointsRequest, ListRestorePointsResponse, repositorySubjects, type RestorePoint } from "../../protocol/mod.js";
import { demoSimulatorConfig } from "../../simulators/demo.js";
import { MiB, sha256File, startE2EStack, type E2EStack } from "../harness/stack.js";

/**
 * SIGTERM drains every process of the stack and it exits 0 within a few seconds; the repository
 * it leaves is intact: after a restart the restore point is listed, verifies and restores exactly.
 */

const EXIT_WITHIN_MS = 5_000;
// Stop order of `ferry up`: the manager first, the simulator last; started again in reverse.
const STOP_ORDER = ["manager", "scheduler", "broker", "guest-processor", "proxy-1", "repo-1-mover", "simulator"];

describe("SIGTERM on every process", () => {
  let e2e: E2EStack;
  let rp: RestorePoint;
  let snapshotShas: Map<string, string>;
  let drainedRp: string | undefined;

  beforeAll(async () => {
    e2e = await startE2EStack({
      name: "shutdown",
      simulatorConfig: (dir) => demoSimulatorConfig({ dir, vms: 1, diskSizeBytes: 8 * MiB }),
      // Long enough that a slow drain shows up as a slow exit here, not as a SIGKILL.
      stopTimeoutMs: 15_000,
    });
    await e2e.putJob({ id: "sql", hypervisor: "sim-1", repository: e2e.stack.repositoryId, vms: [{ id: "vm-1", guestProcessing: true }] });
    // disk-1 (8 MiB) at 2 MiB/s after a second's burst: still reading for ~3 s when the signal comes.
    await e2e.putJob({ id: "sql-slow", hypervisor: "sim-1", repository: e2e.stack.repositoryId, vms: [{ id: "vm-1" }], throttleBytesPerSec: 2 * MiB });
    const session = await e2e.runJob("sql");
    expect(session.result).toBe("success");
    const vm = session.vms[0]!;
    rp = await e2e.restorePoint(vm.restorePointId!);
    snapshotShas = new Map();
    for (const [diskId, path] of await e2e.snapshotImages("vm-1", vm.snapshotId!)) snapshotShas.set(diskId, await sha256File(path));
  });

  afterAll(async () => {
    await e2e?.stop();
  });

  it("lets the manager and the source mover finish a running backup before they exit 0", async () => {
    const t = await e2e.triggerJob("sql-slow");
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 20_000);
    try {
      for await (const s of e2e.sessions.watch(t.sessionId, abort.signal)) {
        if (s.tasks.find((task) => task.diskId === "disk-1")?.state === "running") break;
        if (s.state === "completed") throw new Error(`session ended before the signal: ${s.result}`);
      }
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
    const signalledAt = Date.now();
    const exits = await Promise.all(
      ["manager", "proxy-1"].map(async (name) => {
        const { child } = e2e.stack.process(name);
        await e2e.stack.stopProcess(name, "SIGTERM");
        return { name, code: child.exitCode, signal: child.signalCode, ms: Date.now() - signalledAt };
      }),
    );
    for (const exit of exits) {
      expect({ name: exit.name, code: exit.code, signal: exit.signal }).toEqual({ name: exit.name, code: 0, signal: null });
      expect(exit.ms, `${exit.name} exit time`).toBeLessThan(15_000);
    }
    const stored = await e2e.sessions.get(t.sessionId);
    expect(stored?.session.state).toBe("completed");
    expect(stored?.session.result).toBe("success");
    for (const task of stored!.session.tasks) expect(task.state).toBe("succeeded");
    // The work was really in flight when the signal came.
    expect(stored!.session.tasks.find((task) => task.diskId === "disk-1")!.endedAt!).toBeGreaterThan(signalledAt);
    drainedRp = stored!.session.vms[0]!.restorePointId!;
    await Promise.all(["manager", "proxy-1"].map((name) => e2e.stack.startProcess(name)));
  });

  it("makes each actor (and the simulator) exit 0 within a few seconds", async () => {
    expect(e2e.stack.processes.map((p) => p.name).sort()).toEqual([...STOP_ORDER].sort());
    const took: Record<string, number> = {};
    for (const name of STOP_ORDER) {
      const { child } = e2e.stack.process(name);
      const started = Date.now();
      await e2e.stack.stopProcess(name, "SIGTERM");
      took[name] = Date.now() - started;
      expect({ name, code: child.exitCode, signal: child.signalCode }).toEqual({ name, code: 0, signal: null });
      expect(took[name], `${name} exit time`).toBeLessThan(EXIT_WITHIN_MS);
    }
  });

  it("leaves the restore point readable: listed, verified and restored exactly after a restart", async () => {
    await e2e.stack.startProcess("simulator");
    await Promise.all(STOP_ORDER.filter((n) => n !== "simulator").map((name) => e2e.stack.startProcess(name)));

    const listed = await request(e2e.nc, repositorySubjects.list(e2e.stack.repositoryId), ListRestorePointsRequest, {}, ListRestorePointsResponse);
    expect(listed.restorePoints.map((p) => p.id).sort()).toEqual([rp.id, ...(drainedRp ? [drainedRp] : [])].sort());
    expect(await e2e.restorePoint(rp.id)).toEqual(rp);

    const verify = await e2e.verify(rp);
    expect(verify.result).toBe("success");

    const dir = join(e2e.workdir, "restored");
    const { session, files } = await e2e.restoreToFiles(rp, dir);
    expect(session.result).toBe("success");
    expect(files.size).toBe(2);
    for (const [diskId, path] of files) expect(await sha256File(path), diskId).toBe(snapshotShas.get(diskId));

    // The restore point written while its mover drained is whole too.
    if (drainedRp) expect((await e2e.verify(await e2e.restorePoint(drainedRp))).result).toBe("success");
  });
});
