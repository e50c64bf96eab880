import { createHash } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import {
  SimSnapshotImagesRequest,
  SimSnapshotImagesResponse,
  hypervisorSubjects,
  SimVerb,
  type RestorePoint,
} from "../../protocol/mod.js";
import { request } from "../../lib/rpc.js";
import type { Session } from "../../lib/session-store.js";
import { demoSimulatorConfig } from "../../simulators/demo.js";
import type { SimulatorConfig } from "../../simulators/config.js";
import { explicitNatsUrl, openContext, type CliContext } from "../context.js";
import { demoJobSpec } from "../demo-job.js";
import { formatBytes, formatDuration, printJson, renderTable } from "../format.js";
import { getRestorePoint } from "../repository.js";
import { renderSessionReport, sessionDurationMs, sessionStatsJson } from "../report.js";
import { restoreTargetFor, restoredDiskPath } from "../restore-target.js";
import { triggerJob, triggerRestore, triggerVerify, waitForSession } from "../sessions.js";
import { onTerminationSignal } from "../signals.js";
import { startStack, type Stack } from "../stack.js";

/**
 * `ferry demo`: the whole product on one machine, end to end. Starts the embedded stack with the
 * demo inventory, backs every VM up, restores every disk to files and verifies every restore
 * point (all through the actors), then proves the restored files byte-identical to the snapshot
 * content by SHA-256.
 */

interface DemoOptions {
  vms: number;
  diskSize: number;
  diskImage?: string[];
  workdir?: string;
  json?: boolean;
  clean?: boolean;
}

export interface DemoDisk {
  vm: string;
  vmId: string;
  disk: string;
  restorePointId: string;
  sourceImage: string;
  restoredImage: string;
  /** Of the restored file. */
  sha256: string;
  sourceSha256: string;
  sizeBytes: number;
  identical: boolean;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Where the simulator keeps a disk: the attached image, else `<datastore>/<vmId>/<diskId>.raw`. */
function diskFileOf(config: SimulatorConfig, vmId: string, diskId: string): string | undefined {
  const vm = config.vms.find((v) => v.id === vmId);
  const disk = vm?.disks.find((d) => d.id === diskId);
  if (!disk) return undefined;
  if (disk.content.kind === "image") return disk.content.path;
  const ds = config.datastores.find((d) => d.id === disk.datastoreId) ?? config.datastores[0];
  return ds ? join(ds.path, vmId, `${diskId}.raw`) : undefined;
}

/**
 * The file holding exactly the content the backup read: the simulator keeps each snapshot's
 * image (`retainSnapshotImages`); without it (no snapshot id, or an older run) the disk file,
 * which equals it when nothing wrote to the VM meanwhile.
 */
async function sourceImages(ctx: CliContext, config: SimulatorConfig, vmId: string, snapshotId: string | undefined): Promise<Map<string, string>> {
  const images = new Map<string, string>();
  if (snapshotId) {
    try {
      const res = await request(ctx.nc, hypervisorSubjects.sim(config.hypervisorId, SimVerb.snapshotImages), SimSnapshotImagesRequest, { vmId, snapshotId }, SimSnapshotImagesResponse);
      for (const image of res.images) images.set(image.diskId, image.path);
    } catch (err) {
      log(`  (snapshot images of ${vmId} unavailable: ${(err as Error).message}; comparing with the disk files)`);
    }
  }
  for (const vm of config.vms.filter((v) => v.id === vmId)) {
    for (const disk of vm.disks) {
      const path = diskFileOf(config, vmId, disk.id);
      if (!images.has(disk.id) && path) images.set(disk.id, path);
    }
  }
  return images;
}

function sessionJson(session: Session) {
  return {
    id: session.id,
    result: session.result,
    durationMs: sessionDurationMs(session),
    stats: sessionStatsJson(session),
    warnings: [...session.warnings, ...session.vms.flatMap((v) => v.warnings.map((w) => `${v.name}: ${w}`))],
    ...(session.error ? { error: session.error } : {}),
  };
}

function failedTasks(session: Session): string[] {
  return session.tasks.filter((t) => t.state !== "succeeded").map((t) => `${t.vmName}/${t.diskId} ${t.state}${t.error ? `: ${t.error.code}: ${t.error.message}` : ""}`);
}

async function runDemo(opts: DemoOptions, natsUrl: string | undefined, signal: AbortSignal, setStack: (s: Stack) => void): Promise<{ ok: boolean; report: Record<string, unknown>; text: string }> {
  const workdir = resolve(opts.workdir ?? mkdtempSync(join(tmpdir(), "ferry-demo-")));
  mkdirSync(workdir, { recursive: true });
  const problems: string[] = [];
  const images = (opts.diskImage ?? []).map((p) => resolve(p));
  for (const image of images) if (!existsSync(image)) throw new Error(`--disk-image ${image} does not exist`);

  const simulatorConfig = demoSimulatorConfig({
    dir: join(workdir, "hypervisor"),
    ...(images.length > 0 && opts.vms === undefined ? {} : { vms: opts.vms ?? 3 }),
    diskSizeBytes: opts.diskSize,
    ...(images.length > 0 ? { images } : {}),
    seed: 1,
  });
  const totalBytes = simulatorConfig.vms.reduce((sum, vm) => sum + vm.disks.reduce((s, d) => s + (d.sizeBytes ?? (d.content.kind === "image" ? statSync(d.content.path).size : 0)), 0), 0);
  // A stuck session fails the demo instead of hanging it: generous for a slow machine (2 MiB/s).
  const sessionTimeoutMs = 120_000 + Math.ceil(totalBytes / (2 * 1024 * 1024)) * 1000;
  log(`==> ferry demo in ${workdir}`);
  log(`    ${simulatorConfig.vms.length} VMs, ${simulatorConfig.vms.reduce((n, vm) => n + vm.disks.length, 0)} disks, ${formatBytes(totalBytes)} in all`);

  log("==> starting the stack (nats-server, simulator, manager, scheduler, broker, guest-processor, movers)");
  const startedAt = Date.now();
  const stack = await startStack({
    workdir,
    ...(natsUrl ? { natsUrl } : {}),
    simulatorConfig,
    log: (line) => log(`    ${line}`),
  });
  setStack(stack);
  log(`    ready in ${formatDuration(Date.now() - startedAt)}; NATS ${stack.natsUrl}; logs in ${join(workdir, "logs")}`);

  const ctx = await openContext(stack.natsUrl);
  try {
    const job = demoJobSpec(simulatorConfig, stack.repositoryId);
    await ctx.config.putJob({ job, createdAt: Date.now(), updatedAt: Date.now() });
    log(`==> backup: job ${job.id} (${job.vms.length} VMs; ${job.vms.filter((v) => v.guestProcessing).map((v) => v.id).join(", ") || "none"} application-aware)`);
    const backupTrigger = await triggerJob(ctx, job.id, { reason: "ferry demo" });
    log(`    session ${backupTrigger.sessionId}`);
    const backup = await waitForSession(ctx, backupTrigger.sessionId, { progress: true, signal, timeoutMs: sessionTimeoutMs });
    log(`    ${backup.result} in ${formatDuration(sessionDurationMs(backup))}`);
    if (backup.result !== "success" && backup.result !== "warning") problems.push(`backup ${backup.id} ended ${backup.result}: ${failedTasks(backup).join("; ") || backup.error?.message || "see the session report"}`);

    const points: Array<{ vmId: string; snapshotId: string | undefined; restorePoint: RestorePoint }> = [];
    for (const vm of backup.vms) {
      if (!vm.restorePointId) {
        problems.push(`VM ${vm.name} has no restore point${vm.error ? `: ${vm.error.message}` : ""}`);
        continue;
      }
      points.push({ vmId: vm.vmId, snapshotId: vm.snapshotId, restorePoint: await getRestorePoint(ctx.nc, vm.repositoryId ?? stack.repositoryId, vm.restorePointId) });
    }

    const restoredDir = join(workdir, "restored");
    mkdirSync(restoredDir, { recursive: true });
    log(`==> restore: ${points.length} restore point(s) to ${restoredDir}`);
    const restores = await Promise.all(
      points.map(async (p) => {
        const target = restoreTargetFor(p.restorePoint, { toDir: restoredDir, overwrite: true });
        const t = await triggerRestore(ctx, { repositoryId: p.restorePoint.repositoryId, restorePointId: p.restorePoint.id, target, proxies: [] });
        const session = await waitForSession(ctx, t.sessionId, { signal, timeoutMs: sessionTimeoutMs });
        log(`    ${p.restorePoint.vm.name}: ${session.result} in ${formatDuration(sessionDurationMs(session))} (${session.id})`);
        if (session.result !== "success" && session.result !== "warning") problems.push(`restore of ${p.restorePoint.id} ended ${session.result}: ${failedTasks(session).join("; ")}`);
        return { restorePointId: p.restorePoint.id, session };
      }),
    );

    log(`==> verify: ${points.length} restore point(s)`);
    const verifies = await Promise.all(
      points.map(async (p) => {
        const t = await triggerVerify(ctx, { repositoryId: p.restorePoint.repositoryId, restorePointId: p.restorePoint.id });
        const session = await waitForSession(ctx, t.sessionId, { signal, timeoutMs: sessionTimeoutMs });
        log(`    ${p.restorePoint.vm.name}: ${session.result === "success" ? "passed" : `FAILED (${session.result})`} (${session.id})`);
        if (session.result !== "success") problems.push(`verify of ${p.restorePoint.id} ended ${session.result}: ${failedTasks(session).join("; ")}`);
        return { restorePointId: p.restorePoint.id, session };
      }),
    );

    log("==> compare: SHA-256 of each restored disk against the snapshot's content");
    const disks: DemoDisk[] = [];
    for (const p of points) {
      const sources = await sourceImages(ctx, simulatorConfig, p.vmId, p.snapshotId);
      for (const disk of p.restorePoint.disks) {
        const restoredImage = restoredDiskPath(restoredDir, p.restorePoint.vm.name, disk.diskId);
        const sourceImage = sources.get(disk.diskId) ?? "";
        const restoredExists = existsSync(restoredImage);
        const [sha256, sourceSha256] = await Promise.all([
          restoredExists ? sha256File(restoredImage) : Promise.resolve(""),
          sourceImage && existsSync(sourceImage) ? sha256File(sourceImage) : Promise.resolve(""),
        ]);
        const identical = sha256 !== "" && sha256 === sourceSha256;
        disks.push({ vm: p.restorePoint.vm.name, vmId: p.vmId, disk: disk.diskId, restorePointId: p.restorePoint.id, sourceImage, restoredImage, sha256, sourceSha256, sizeBytes: disk.sizeBytes, identical });
        if (!restoredExists) problems.push(`${p.restorePoint.vm.name}/${disk.diskId}: restored file ${restoredImage} is missing`);
        else if (!sourceSha256) problems.push(`${p.restorePoint.vm.name}/${disk.diskId}: no source image to compare with`);
        else if (!identical) problems.push(`${p.restorePoint.vm.name}/${disk.diskId}: restored file differs from the source (${sha256.slice(0, 12)} vs ${sourceSha256.slice(0, 12)})`);
      }
    }
    const expectedDisks = simulatorConfig.vms.reduce((n, vm) => n + vm.disks.length, 0);
    if (disks.length !== expectedDisks) problems.push(`compared ${disks.length} of ${expectedDisks} disks`);

    const ok = problems.length === 0;
    const report = {
      ok,
      workdir,
      natsUrl: stack.natsUrl,
      session: sessionJson(backup),
      disks,
      restore: {
        ok: restores.every((r) => r.session.result === "success" || r.session.result === "warning"),
        sessions: restores.map((r) => ({ restorePointId: r.restorePointId, ...sessionJson(r.session) })),
      },
      verify: {
        ok: verifies.every((v) => v.session.result === "success"),
        sessions: verifies.map((v) => ({ restorePointId: v.restorePointId, ...sessionJson(v.session) })),
      },
      problems,
    };
    const table = renderTable(
      ["vm", "disk", "size", "sha256", "identical"],
      disks.map((d) => [d.vm, d.disk, formatBytes(d.sizeBytes), d.sha256.slice(0, 16) || "-", d.identical ? "yes" : "NO"]),
      { alignRight: ["size"] },
    );
    const text = [
      renderSessionReport(backup),
      "",
      "Restored disks",
      table,
      "",
      ok
        ? `Demo passed: ${disks.length} disk(s) backed up, restored through the movers and byte-identical to their snapshots; every restore point verified.`
        : `Demo FAILED:\n${problems.map((p) => `  - ${p}`).join("\n")}\nLogs: ${join(workdir, "logs")}`,
    ].join("\n");
    writeFileSync(join(workdir, "demo-report.json"), `${JSON.stringify(report, null, 2)}\n`);
    return { ok, report, text };
  } finally {
    await ctx.close();
  }
}

/** `ferry demo` (options in cli/commands/demo.ts). */
export async function demo(opts: DemoOptions, cmd: Command): Promise<void> {
  const abort = new AbortController();
  let stack: Stack | undefined;
  const removeHandlers = onTerminationSignal(async (signal) => {
    log(`\nferry demo: ${signal}: stopping`);
    abort.abort();
    await stack?.stop();
    process.exit(130);
  });
  let outcome: Awaited<ReturnType<typeof runDemo>> | undefined;
  try {
    outcome = await runDemo(opts, explicitNatsUrl(cmd), abort.signal, (s) => (stack = s));
  } finally {
    if (stack) {
      log("==> stopping the stack");
      await stack.stop();
    }
    removeHandlers();
  }
  if (opts.json) {
    process.stderr.write(`${outcome.text}\n`);
    printJson(outcome.report);
  } else {
    process.stdout.write(`${outcome.text}\n`);
  }
  const workdir = outcome.report.workdir as string;
  if (outcome.ok && opts.clean) {
    for (const bulky of ["hypervisor", "repository", "restored"]) rmSync(join(workdir, bulky), { recursive: true, force: true });
    log(`(workdir ${workdir} keeps logs/ and demo-report.json)`);
  } else {
    log(`(workdir: ${workdir})`);
  }
  process.exitCode = outcome.ok ? 0 : 1;
}
