import type { ConfigStore } from "../../lib/config-store.js";
import { newId } from "../../lib/ids.js";
import {
  ErrorCode,
  FerryError,
  JobTrigger,
  MoverRole,
  TaskState,
  isFerryError,
  type JobSpec,
  type Msg,
  type SnapshotInfo,
  type TaskRecord,
  type VmInfo,
  type VmRecord,
  type VmSelector,
} from "../../protocol/mod.js";
import { withRetry } from "./clients.js";
import { formatBytes } from "./session-stats.js";
import { pendingTasks } from "./task-plan.js";
import { runTask, type SessionContext } from "./task-runner.js";

/** Whether a VM gets application-aware processing: a matching selector's override, else the job's default. */
export function guestProcessingFor(job: Pick<JobSpec, "vms" | "guestProcessing">, vm: Pick<VmInfo, "id" | "name" | "tags">): boolean {
  const override = job.vms.find((s) => s.guestProcessing !== undefined && selectorMatches(s, vm));
  return override?.guestProcessing ?? job.guestProcessing.enabled;
}

/** The broker's matching rule: id exact, name exact or with `*` globs, tag contained. */
function selectorMatches(selector: VmSelector, vm: Pick<VmInfo, "id" | "name" | "tags">): boolean {
  if (selector.id !== undefined) return selector.id === vm.id;
  if (selector.name !== undefined) return nameMatches(selector.name, vm.name);
  if (selector.tag !== undefined) return vm.tags.includes(selector.tag);
  return false;
}

function nameMatches(pattern: string, name: string): boolean {
  if (!pattern.includes("*")) return pattern === name;
  const body = pattern
    .split("*")
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .join(".*");
  return new RegExp(`^${body}$`, "s").test(name);
}

function describeSelector(s: { id?: string | undefined; name?: string | undefined; tag?: string | undefined }): string {
  if (s.id !== undefined) return `id ${s.id}`;
  if (s.name !== undefined) return `name ${JSON.stringify(s.name)}`;
  return `tag ${JSON.stringify(s.tag ?? "")}`;
}

export interface BackupDeps {
  config: ConfigStore;
}

/**
 * A backup session (design.md, "The backup session"): resolve the job's VMs, one task per disk,
 * and per VM concurrently: slots, quiesce → snapshot → thaw, movers per disk, snapshot removal
 * (always), and the restore point commit when every disk made it.
 */
export async function runBackupSession(ctx: SessionContext, trigger: Msg<typeof JobTrigger>, deps: BackupDeps): Promise<void> {
  const { recorder } = ctx;
  const record = recorder.record;
  let job: JobSpec;
  try {
    const stored = await withRetry(() => deps.config.getJob(trigger.jobId), { attempts: 3, signal: ctx.signal });
    if (!stored) throw new FerryError(ErrorCode.NotFound, `job ${trigger.jobId} not found`, { retryable: false });
    job = stored.job;
  } catch (err) {
    const error = FerryError.from(err);
    throw isFerryError(err, ErrorCode.NotFound) ? error : new FerryError(error.code, `cannot read job ${trigger.jobId}: ${error.message}`, { retryable: false });
  }
  record.jobName = job.name ?? job.id;
  recorder.logLine("info", `backup of job ${record.jobName} started, requested by ${trigger.requestedBy}${trigger.reason ? ` (${trigger.reason})` : ""}`);

  const selectors = job.vms.map((s) => ({
    ...(s.id === undefined ? {} : { id: s.id }),
    ...(s.name === undefined ? {} : { name: s.name }),
    ...(s.tag === undefined ? {} : { tag: s.tag }),
  }));
  let listed;
  try {
    listed = await withRetry(() => ctx.clients.listVms({ hypervisorId: job.hypervisor, selectors }), { attempts: 3, signal: ctx.signal });
  } catch (err) {
    const error = FerryError.from(err);
    throw new FerryError(error.code, `cannot list VMs of hypervisor ${job.hypervisor}: ${error.message}`, { retryable: false });
  }
  for (const unmatched of listed.unmatched) recorder.addWarning(`selector ${describeSelector(unmatched)} matched no VM`);
  const vms = [...new Map(listed.vms.map((vm) => [vm.id, vm])).values()];
  if (vms.length === 0) throw new FerryError(ErrorCode.NotFound, "no VM matched the job's selectors", { retryable: false });

  const taken = new Set<string>();
  const plans: VmPlan[] = vms.map((vm) => {
    const restorePointId = newId("rp");
    const disks = vm.disks.map((d) => ({ diskId: d.id, label: d.label, sizeBytes: d.sizeBytes }));
    const tasks = pendingTasks(recorder.id, "backup", vm, disks, { repositoryId: job.repository, restorePointId }, taken);
    return { vm, tasks, restorePointId };
  });
  await recorder.plan(
    plans.map(({ vm }) => ({ vmId: vm.id, name: vm.name, state: "pending", warnings: [] })),
    plans.flatMap((p) => p.tasks),
  );
  recorder.logLine("info", `${vms.length} VM(s), ${record.tasks.length} disk(s), ${formatBytes(record.totalBytes)} to process`);

  await Promise.all(plans.map((plan) => backupVm(ctx, job, plan)));
}

interface VmPlan {
  vm: VmInfo;
  tasks: TaskRecord[];
  restorePointId: string;
}

/** What the VM's snapshot preparation left for the commit and the removal. */
interface SnapshotState {
  snapshot?: SnapshotInfo;
  consistency: "application" | "crash";
  /** The create request timed out: the hypervisor may still have made the snapshot. */
  createTimedOut: boolean;
}

/** One VM: its disks' tasks, the snapshot they share, and what happens when all have ended. */
async function backupVm(ctx: SessionContext, job: JobSpec, plan: VmPlan): Promise<void> {
  const { recorder, clients } = ctx;
  const { vm, tasks, restorePointId } = plan;
  const vmRecord = recorder.vm(vm.id);
  const where = { vmId: vm.id };
  vmRecord.state = "running";
  recorder.changed();

  if (tasks.length === 0) {
    failVm(ctx, vmRecord, new FerryError(ErrorCode.NotFound, `VM ${vm.name} has no disks`));
    return;
  }

  // A failed snapshot fails the VM's other tasks too, also those still waiting for slots.
  const vmAbort = new AbortController();
  const snapshotState: SnapshotState = { consistency: "crash", createTimedOut: false };
  let preparing: Promise<SnapshotInfo> | undefined;
  const ensureSnapshot = () => {
    preparing ??= prepareSnapshot(ctx, job, vm, vmRecord, snapshotState).catch((err: unknown) => {
      const error = FerryError.from(err);
      vmAbort.abort(new FerryError(error.code, `VM ${vm.name} not prepared: ${error.message}`, { retryable: false }));
      throw error;
    });
    return preparing;
  };

  const manifests = new Map<string, string>();
  const ended = await Promise.all(
    tasks.map((task) =>
      runTask(ctx, {
        taskId: task.id,
        assign: { repositoryId: job.repository, needsProxy: true, proxies: job.proxies, priority: job.priority },
        doneRole: MoverRole.Target,
        signal: vmAbort.signal,
        start: async (assignment, started) => {
          const snapshot = await ensureSnapshot();
          const disk = snapshot.disks.find((d) => d.diskId === task.diskId);
          if (!disk) throw new FerryError(ErrorCode.NotFound, `snapshot ${snapshot.id} has no disk ${task.diskId}`);
          const proxyId = assignment.proxyId!;
          started(MoverRole.Target);
          const opened = await clients.backupOpen(assignment.targetMoverId, {
            sessionId: recorder.id,
            taskId: task.id,
            attempt: task.attempt,
            jobId: job.id,
            restorePointId,
            vmId: vm.id,
            diskId: task.diskId,
            diskLabel: task.diskLabel,
            sizeBytes: disk.sizeBytes,
            blockSize: job.blockSize,
          });
          started(MoverRole.Source);
          await clients.backupStart(proxyId, {
            sessionId: recorder.id,
            taskId: task.id,
            attempt: task.attempt,
            restorePointId,
            diskId: task.diskId,
            source: disk.transport,
            sizeBytes: disk.sizeBytes,
            blockSize: job.blockSize,
            compression: job.compression,
            throttleBytesPerSec: job.throttleBytesPerSec,
            channel: opened.channel,
          });
        },
        accept: (outcome) => {
          if (outcome.kind !== "backup" || outcome.diskId !== task.diskId || outcome.restorePointId !== restorePointId) {
            return new FerryError(ErrorCode.Internal, `task ${task.id} ended with an outcome for something else (${outcome.kind})`);
          }
          manifests.set(task.diskId, outcome.manifestDigest);
          return undefined;
        },
      }),
    ),
  );

  // Invariant 4: the snapshot this session created is removed, whatever happened to the tasks.
  await preparing?.catch(() => undefined);
  await removeSnapshot(ctx, job, vm, vmRecord, snapshotState);

  const failed = ended.find((t) => t.state !== TaskState.Succeeded);
  if (failed || !snapshotState.snapshot) {
    const reason = failed?.error ?? { code: ErrorCode.Internal, message: "no snapshot was taken", retryable: false };
    failVm(ctx, vmRecord, new FerryError(reason.code, `disk ${failed?.diskLabel ?? "?"}: ${reason.message}`, { retryable: false }));
    return;
  }
  try {
    const { restorePoint } = await withRetry(
      () =>
        clients.commitRestorePoint(job.repository, {
          restorePoint: {
            id: restorePointId,
            jobId: job.id,
            jobName: job.name ?? job.id,
            sessionId: recorder.id,
            vm: { id: vm.id, name: vm.name, hypervisorId: job.hypervisor, hostId: vm.hostId, guestOs: vm.guestOs, tags: vm.tags },
            createdAt: snapshotState.snapshot!.createdAt,
            consistency: snapshotState.consistency,
            warnings: [...vmRecord.warnings],
          },
          disks: tasks.map((t) => ({ diskId: t.diskId, manifestDigest: manifests.get(t.diskId)! })),
        }),
      { attempts: 3 },
    );
    vmRecord.restorePointId = restorePoint.id;
    vmRecord.repositoryId = restorePoint.repositoryId;
    vmRecord.consistency = restorePoint.consistency;
    vmRecord.state = "succeeded";
    recorder.changed();
    recorder.logLine("info", `VM ${vm.name}: restore point ${restorePoint.id} committed (${snapshotState.consistency}-consistent)`, where);
  } catch (err) {
    const error = FerryError.from(err);
    failVm(ctx, vmRecord, new FerryError(error.code, `restore point commit failed: ${error.message}`, { retryable: false }));
  }
}

function failVm(ctx: SessionContext, vmRecord: VmRecord, error: FerryError): void {
  vmRecord.state = "failed";
  vmRecord.error = error.toWire();
  ctx.recorder.changed();
  ctx.recorder.logLine("error", `VM ${vmRecord.name} failed: ${error.message}`, { vmId: vmRecord.vmId });
}

/**
 * Quiesce (when guest processing applies) → snapshot → thaw right after, also when the snapshot
 * failed. A guest failure degrades to crash-consistent with a warning, or fails the VM when the
 * job says `onFailure: fail`.
 */
async function prepareSnapshot(
  ctx: SessionContext,
  job: JobSpec,
  vm: VmInfo,
  vmRecord: VmRecord,
  state: SnapshotState,
): Promise<SnapshotInfo> {
  const { recorder, clients } = ctx;
  const where = { vmId: vm.id };
  const sessionId = recorder.id;
  let guestError: FerryError | undefined;
  const guestFailed = (message: string, code: ErrorCode) => {
    if (job.guestProcessing.onFailure === "fail") {
      guestError ??= new FerryError(code, message, { retryable: false });
      recorder.logLine("error", `VM ${vm.name}: ${message}`, where);
    } else {
      recorder.addWarning(`${message}; the restore point is crash-consistent`, where);
    }
  };

  let freezeId: string | undefined;
  if (guestProcessingFor(job, vm)) {
    if (!vm.guestAgent) {
      recorder.addWarning(`guest processing is enabled but VM ${vm.name} has no guest agent; the restore point is crash-consistent`, where);
    } else {
      try {
        const frozen = await clients.quiesce({ sessionId, vmId: vm.id, freezeTimeoutMs: job.guestProcessing.freezeTimeoutMs });
        freezeId = frozen.freezeId;
        recorder.logLine("info", `VM ${vm.name}: ${frozen.applications.length} application(s) quiesced`, where);
      } catch (err) {
        const error = FerryError.from(err);
        guestFailed(`guest quiesce failed: ${error.message}`, error.code);
      }
    }
  }
  if (guestError) throw guestError;

  let snapshotError: FerryError | undefined;
  try {
    const { snapshot } = await clients.snapshotCreate(job.hypervisor, {
      vmId: vm.id,
      name: `ferry-${sessionId}`,
      quiesced: freezeId !== undefined,
      sessionId,
    });
    state.snapshot = snapshot;
    vmRecord.snapshotId = snapshot.id;
    recorder.changed();
    recorder.logLine("info", `VM ${vm.name}: snapshot ${snapshot.id} created`, where);
  } catch (err) {
    snapshotError = FerryError.from(err);
    state.createTimedOut = snapshotError.code === ErrorCode.Timeout;
  }

  let consistent = false;
  if (freezeId !== undefined) {
    try {
      const thawed = await clients.thaw({ sessionId, vmId: vm.id, freezeId });
      consistent = thawed.consistent;
      if (!thawed.consistent) guestFailed(`guest freeze expired after ${thawed.frozenMs} ms before the thaw`, ErrorCode.Timeout);
    } catch (err) {
      const error = FerryError.from(err);
      guestFailed(`guest thaw failed: ${error.message}`, error.code);
    }
  }
  if (snapshotError) throw new FerryError(snapshotError.code, `snapshot failed: ${snapshotError.message}`, { retryable: false });
  if (guestError) throw guestError;
  state.consistency = consistent ? "application" : "crash";
  vmRecord.consistency = state.consistency;
  recorder.changed();
  return state.snapshot!;
}

async function removeSnapshot(
  ctx: SessionContext,
  job: JobSpec,
  vm: VmInfo,
  vmRecord: VmRecord,
  state: SnapshotState,
): Promise<void> {
  const { recorder, clients } = ctx;
  const where = { vmId: vm.id };
  const snapshotIds: string[] = [];
  if (state.snapshot) snapshotIds.push(state.snapshot.id);
  else if (state.createTimedOut) {
    // The hypervisor may have made the snapshot after the request timed out: find it by session.
    try {
      const { snapshots } = await clients.snapshotList(job.hypervisor, { vmId: vm.id });
      for (const s of snapshots) if (s.sessionId === recorder.id) snapshotIds.push(s.id);
    } catch (err) {
      recorder.addWarning(`could not check VM ${vm.name} for a snapshot left by a timed-out request: ${(err as Error).message}`, where);
    }
  }
  for (const snapshotId of snapshotIds) {
    try {
      // Not tied to the session's signal: a stopped or aborted session still removes its snapshot.
      const removed = await withRetry(() => clients.snapshotRemove(job.hypervisor, { vmId: vm.id, snapshotId }), { attempts: 3 });
      recorder.logLine("info", `VM ${vm.name}: snapshot ${snapshotId} removed (${removed.mergedBytes} bytes merged)`, where);
    } catch (err) {
      recorder.addWarning(`snapshot ${snapshotId} of VM ${vm.name} could not be removed: ${(err as Error).message}; remove it by hand`, where);
      vmRecord.snapshotId = snapshotId;
    }
  }
}
