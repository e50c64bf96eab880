import {
  ErrorCode,
  FerryError,
  MoverRole,
  TaskState,
  VerifyRequest,
  emptyTaskStats,
  type Msg,
  type TaskOutcome,
  type TaskRecord,
} from "../../protocol/mod.js";
import { taskIdFor } from "./backup-session.js";
import { fetchRestorePoint } from "./restore-session.js";
import { runTask, type SessionContext } from "./task-runner.js";

/** A verify outcome with corrupt blocks fails its task: the restore point cannot be trusted. */
export function verifyRejection(outcome: TaskOutcome, taskId: string): FerryError | undefined {
  if (outcome.kind !== "verify") return new FerryError(ErrorCode.Internal, `task ${taskId} ended with a ${outcome.kind} outcome`);
  if (outcome.corruptBlocks === 0) return undefined;
  const first = outcome.corruptBlockIndexes.length > 0 ? ` (first: blocks ${outcome.corruptBlockIndexes.join(", ")})` : "";
  return new FerryError(ErrorCode.Corrupt, `${outcome.corruptBlocks} of ${outcome.blocksChecked} blocks corrupt${first}`, { retryable: false });
}

/** A verify session: one task per disk, run by a target mover of the repository alone. */
export async function runVerifySession(ctx: SessionContext, req: Msg<typeof VerifyRequest>): Promise<void> {
  const { recorder, clients } = ctx;
  const record = recorder.record;
  const rp = await fetchRestorePoint(ctx, req.repositoryId, req.restorePointId);
  record.jobId = rp.jobId;
  record.jobName = rp.jobName;
  recorder.logLine("info", `verify of restore point ${rp.id} (VM ${rp.vm.name}) started, requested by ${req.requestedBy}`);
  if (rp.disks.length === 0) throw new FerryError(ErrorCode.NotFound, `restore point ${rp.id} has no disks`, { retryable: false });

  const taken = new Set<string>();
  const tasks: TaskRecord[] = rp.disks.map((disk) => {
    const id = taskIdFor(recorder.id, rp.vm.id, disk.diskId, taken);
    taken.add(id);
    return {
      id,
      kind: "verify",
      vmId: rp.vm.id,
      vmName: rp.vm.name,
      diskId: disk.diskId,
      diskLabel: disk.label,
      sizeBytes: disk.sizeBytes,
      state: TaskState.Pending,
      attempt: 0,
      repositoryId: req.repositoryId,
      restorePointId: rp.id,
      stats: emptyTaskStats(),
    };
  });
  record.vms = [{ vmId: rp.vm.id, name: rp.vm.name, state: "running", restorePointId: rp.id, repositoryId: req.repositoryId, warnings: [] }];
  record.tasks = tasks;
  record.totalBytes = tasks.reduce((sum, t) => sum + t.sizeBytes, 0);
  await recorder.flush();

  const ended = await Promise.all(
    tasks.map((task) =>
      runTask(ctx, {
        taskId: task.id,
        assign: { repositoryId: req.repositoryId, needsProxy: false, proxies: [] },
        doneRole: MoverRole.Target,
        start: async (assignment, started) => {
          started(MoverRole.Target);
          await clients.verifyStart(assignment.targetMoverId, {
            sessionId: recorder.id,
            taskId: task.id,
            restorePointId: rp.id,
            diskId: task.diskId,
          });
        },
        accept: (outcome, t) => verifyRejection(outcome, t.id),
      }),
    ),
  );
  const vm = recorder.vm(rp.vm.id);
  vm.state = ended.every((t) => t.state === TaskState.Succeeded) ? "succeeded" : "failed";
  const failed = ended.find((t) => t.state !== TaskState.Succeeded);
  if (failed?.error) vm.error = failed.error;
  recorder.changed();
}
