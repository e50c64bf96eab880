import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startStack, type Stack } from "../cli/stack.js";
import { openContext } from "../cli/context.js";
import { triggerJob, triggerRestore, waitForSession } from "../cli/sessions.js";
import type { Session } from "../lib/session-store.js";

export interface FerryRun {
  backupSeconds: number;
  restoreSeconds: number;
  backup: Session;
  restore: Session;
  restoredPath: string;
  /** Peak resident memory (VmHWM) of each process of the stack, MiB. */
  peakRssMiB: Record<string, number>;
  /** CPU seconds each process used during the backup. */
  backupCpuSeconds: Record<string, number>;
}

function peakRssMiB(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const kb = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb ? Math.round(Number(kb) / 1024) : 0;
  } catch {
    return 0;
  }
}

function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, clock ticks of 10 ms
  } catch {
    return 0;
  }
}

function processCpu(stack: Stack): Record<string, number> {
  const out: Record<string, number> = { "nats-server": cpuSeconds(stack.nats?.pid) };
  for (const p of stack.processes) out[p.name] = cpuSeconds(p.child.pid);
  return out;
}

/**
 * A full backup of one VM whose disk is `image`, through every actor of an embedded stack on a
 * real nats-server, then a restore of that disk to a file, both timed from trigger to completed
 * session.
 */
export async function runFerry(image: string, workdir: string, opts: { compression?: "snappy" | "none"; log?: (line: string) => void } = {}): Promise<FerryRun> {
  const sizeBytes = Number((await import("node:fs")).statSync(image).size);
  const stack = await startStack({
    workdir,
    simulatorConfig: {
      hypervisorId: "bench-hv",
      retainSnapshotImages: false,
      hosts: [{ id: "host-1", name: "host-1" }],
      datastores: [{ id: "ds-1", name: "ds-1", path: join(workdir, "datastore"), capacityBytes: 4 * 1024 ** 4 }],
      vms: [
        {
          id: "vm-bench",
          name: "bench",
          hostId: "host-1",
          guestOs: "linux",
          tags: [],
          powerState: "poweredOn",
          disks: [{ id: "disk-1", label: "bench disk", sizeBytes, datastoreId: "ds-1", content: { kind: "image", path: image } }],
        },
      ],
    },
    proxies: 1,
    proxySlots: 2,
    env: { FERRY_LOG_LEVEL: "warn" },
    log: opts.log,
  });
  const ctx = await openContext(stack.natsUrl);
  try {
    await ctx.config.putJob({
      job: { id: "bench", hypervisor: stack.hypervisorId, repository: stack.repositoryId, vms: [{ id: "vm-bench" }], compression: opts.compression ?? "snappy" },
      createdAt: Date.now(),
      updatedAt: Date.now(),
    });
    const cpuBefore = processCpu(stack);
    let started = performance.now();
    const backupTrigger = await triggerJob(ctx, "bench");
    const backup = await waitForSession(ctx, backupTrigger.sessionId, { timeoutMs: 30 * 60_000 });
    const backupSeconds = (performance.now() - started) / 1000;
    const cpuAfter = processCpu(stack);
    const backupCpuSeconds = Object.fromEntries(Object.entries(cpuAfter).map(([k, v]) => [k, Math.round((v - (cpuBefore[k] ?? 0)) * 100) / 100]));
    if (backup.result === "failed") throw new Error(`backup failed: ${backup.error?.message ?? JSON.stringify(backup.tasks.map((t) => t.error))}`);
    const rpId = backup.vms[0]?.restorePointId;
    if (!rpId) throw new Error("backup produced no restore point");

    const restoredPath = join(workdir, "restored-disk-1.raw");
    started = performance.now();
    const restoreTrigger = await triggerRestore(ctx, {
      repositoryId: stack.repositoryId,
      restorePointId: rpId,
      target: { kind: "files", disks: [{ diskId: "disk-1", path: restoredPath }], overwrite: true },
      proxies: [],
    });
    const restore = await waitForSession(ctx, restoreTrigger.sessionId, { timeoutMs: 30 * 60_000 });
    const restoreSeconds = (performance.now() - started) / 1000;
    if (restore.result === "failed") throw new Error(`restore failed: ${restore.error?.message ?? JSON.stringify(restore.tasks.map((t) => t.error))}`);

    const peak: Record<string, number> = { "nats-server": peakRssMiB(stack.nats?.pid) };
    for (const p of stack.processes) peak[p.name] = peakRssMiB(p.child.pid);
    return { backupSeconds, restoreSeconds, backup, restore, restoredPath, peakRssMiB: peak, backupCpuSeconds };
  } finally {
    await ctx.close();
    await stack.stop();
  }
}
