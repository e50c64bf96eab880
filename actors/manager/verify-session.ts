import {
  ErrorCode,
  FerryError,
  MoverRole,
  VerifyRequest,
  type Msg,
  type TaskOutcome,
} from "../../protocol/mod.js";
import { fetchRestorePoint } from "./restore-session.js";
import { pendingTasks } from "./task-plan.js";
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

  const place = { repositoryId: req.repositoryId, restorePointId: rp.id };
  const tasks = pendingTasks(recorder.id, "verify", rp.vm, rp.disks, place);
  await recorder.plan([{ vmId: rp.vm.id, name: rp.vm.name, state: "running", ...place, warnings: [] }], tasks);

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
  recorder.endVm(rp.vm.id, ended);
}
