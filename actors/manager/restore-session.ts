import {
  ErrorCode,
  FerryError,
  MoverRole,
  RestoreOpenRequest,
  RestoreRequest,
  type BodyIn,
  type Msg,
  type RestorePoint,
  type RestorePointDisk,
} from "../../protocol/mod.js";
import { withRetry } from "./clients.js";
import { pendingTasks } from "./task-plan.js";
import { runTask, type SessionContext } from "./task-runner.js";

type Destination = BodyIn<typeof RestoreOpenRequest>["destination"];

/** Reads a restore point from its repository; a failure ends the session. */
export async function fetchRestorePoint(ctx: SessionContext, repositoryId: string, restorePointId: string): Promise<RestorePoint> {
  try {
    const { restorePoint } = await withRetry(() => ctx.clients.getRestorePoint(repositoryId, restorePointId), {
      attempts: 3,
      signal: ctx.signal,
    });
    return restorePoint;
  } catch (err) {
    const error = FerryError.from(err);
    throw new FerryError(error.code, `restore point ${restorePointId} in repository ${repositoryId}: ${error.message}`, { retryable: false });
  }
}

/**
 * A restore session: one task per disk. The source mover (proxy) receives and writes the disk,
 * so it opens the channel; the target mover reads the restore point and sends.
 */
export async function runRestoreSession(ctx: SessionContext, req: Msg<typeof RestoreRequest>): Promise<void> {
  const { recorder, clients } = ctx;
  const record = recorder.record;
  const rp = await fetchRestorePoint(ctx, req.repositoryId, req.restorePointId);
  record.jobId = rp.jobId;
  record.jobName = rp.jobName;
  recorder.logLine("info", `restore of VM ${rp.vm.name} from restore point ${rp.id} started, requested by ${req.requestedBy}`);

  const wanted: Array<{ disk: RestorePointDisk; destination: Destination }> = [];
  let vmId = rp.vm.id;
  let vmName = rp.vm.name;
  const target = req.target;
  if (target.kind === "files") {
    for (const { diskId, path } of target.disks) {
      const disk = rp.disks.find((d) => d.diskId === diskId);
      if (!disk) throw new FerryError(ErrorCode.NotFound, `restore point ${rp.id} has no disk ${diskId}`, { retryable: false });
      wanted.push({ disk, destination: { kind: "file", path, overwrite: target.overwrite } });
    }
  } else {
    if (rp.disks.length === 0) throw new FerryError(ErrorCode.NotFound, `restore point ${rp.id} has no disks`, { retryable: false });
    let created;
    try {
      created = await clients.vmCreate(target.hypervisorId, {
        name: target.name,
        ...(target.hostId === undefined ? {} : { hostId: target.hostId }),
        ...(target.datastoreId === undefined ? {} : { datastoreId: target.datastoreId }),
        guestOs: rp.vm.guestOs,
        tags: rp.vm.tags,
        disks: rp.disks.map((d) => ({ label: d.label, sizeBytes: d.sizeBytes })),
      });
    } catch (err) {
      const error = FerryError.from(err);
      throw new FerryError(error.code, `cannot create VM ${target.name} on ${target.hypervisorId}: ${error.message}`, { retryable: false });
    }
    if (created.disks.length !== rp.disks.length) {
      throw new FerryError(ErrorCode.Internal, `hypervisor created ${created.disks.length} disks, ${rp.disks.length} were asked for`, { retryable: false });
    }
    vmId = created.vm.id;
    vmName = created.vm.name;
    recorder.logLine("info", `VM ${vmName} (${vmId}) created on ${target.hypervisorId}`, { vmId });
    rp.disks.forEach((disk, i) => wanted.push({ disk, destination: { kind: "transport", transport: created.disks[i]!.transport } }));
  }

  const place = { repositoryId: req.repositoryId, restorePointId: rp.id };
  const tasks = pendingTasks(recorder.id, "restore", { id: vmId, name: vmName }, wanted.map(({ disk }) => disk), place);
  await recorder.plan([{ vmId, name: vmName, state: "running", ...place, warnings: [] }], tasks);

  const ended = await Promise.all(
    tasks.map((task, i) => {
      const { disk, destination } = wanted[i]!;
      return runTask(ctx, {
        taskId: task.id,
        assign: { repositoryId: req.repositoryId, needsProxy: true, proxies: req.proxies },
        doneRole: MoverRole.Source,
        start: async (assignment, started) => {
          started(MoverRole.Source);
          const opened = await clients.restoreOpen(assignment.proxyId!, {
            sessionId: recorder.id,
            taskId: task.id,
            attempt: task.attempt,
            destination,
            sizeBytes: disk.sizeBytes,
            blockSize: disk.blockSize,
          });
          started(MoverRole.Target);
          await clients.restoreStart(assignment.targetMoverId, {
            sessionId: recorder.id,
            taskId: task.id,
            attempt: task.attempt,
            restorePointId: rp.id,
            diskId: disk.diskId,
            channel: opened.channel,
          });
        },
        accept: (outcome, t) => {
          if (outcome.kind !== "restore") return new FerryError(ErrorCode.Internal, `task ${t.id} ended with a ${outcome.kind} outcome`);
          t.outputPath = outcome.path;
          return undefined;
        },
      });
    }),
  );
  recorder.endVm(vmId, ended);
}
