import type { NatsConnection } from "@nats-io/nats-core";
import { request } from "../../lib/rpc.js";
import {
  AssignRequest,
  AssignResponse,
  BackupOpenRequest,
  BackupStartRequest,
  ChannelOpened,
  CommitRestorePointRequest,
  CommitRestorePointResponse,
  ErrorCode,
  FerryError,
  GetRestorePointRequest,
  GetRestorePointResponse,
  ListVmsRequest,
  ListVmsResponse,
  QuiesceRequest,
  QuiesceResponse,
  ReleaseRequest,
  ReleaseResponse,
  RestoreOpenRequest,
  RestoreStartRequest,
  SnapshotCreateRequest,
  SnapshotCreateResponse,
  SnapshotListRequest,
  SnapshotListResponse,
  SnapshotRemoveRequest,
  SnapshotRemoveResponse,
  TaskAccepted,
  TaskCancelRequest,
  TaskCancelResponse,
  ThawRequest,
  ThawResponse,
  VerifyStartRequest,
  VmCreateRequest,
  VmCreateResponse,
  brokerSubjects,
  guestProcessorSubjects,
  hypervisorSubjects,
  repositorySubjects,
  schedulerSubjects,
  sourceMoverSubjects,
  targetMoverSubjects,
  type BodyIn,
  type MessageDef,
  type MoverRole,
  type Msg,
} from "../../protocol/mod.js";

/** How long the manager waits for each peer. Slow operations (fsync, snapshot merge) get more. */
export const ManagerTimeouts = {
  default: 5_000,
  broker: 15_000,
  /** Freezing applications can take a while inside the guest. */
  quiesce: 30_000,
  thaw: 15_000,
  snapshotCreate: 30_000,
  /** Removal merges the delta written during the backup. */
  snapshotRemove: 60_000,
  vmCreate: 60_000,
  /** The commit fsyncs the restore point file and its directory. */
  commit: 30_000,
  /** The scheduler holds an assign request up to `waitMs`; the reply needs a margin on top. */
  assignWaitMs: 3_000,
  assignMargin: 3_000,
} as const;

/** The requests a session makes to other actors, each with its timeout. Every method throws FerryError. */
export class ManagerClients {
  constructor(private readonly nc: NatsConnection) {}

  private call<Req extends MessageDef, Res extends MessageDef>(
    subject: string,
    reqDef: Req,
    body: BodyIn<Req>,
    resDef: Res,
    timeoutMs: number = ManagerTimeouts.default,
  ): Promise<Msg<Res>> {
    return request(this.nc, subject, reqDef, body, resDef, { timeoutMs });
  }

  listVms(body: BodyIn<typeof ListVmsRequest>) {
    return this.call(brokerSubjects.vms(), ListVmsRequest, body, ListVmsResponse, ManagerTimeouts.broker);
  }

  assign(body: BodyIn<typeof AssignRequest>) {
    const waitMs = body.waitMs ?? ManagerTimeouts.assignWaitMs;
    return this.call(schedulerSubjects.assign(), AssignRequest, { ...body, waitMs }, AssignResponse, waitMs + ManagerTimeouts.assignMargin);
  }

  release(taskId: string) {
    return this.call(schedulerSubjects.release(), ReleaseRequest, { taskId }, ReleaseResponse);
  }

  quiesce(body: BodyIn<typeof QuiesceRequest>) {
    return this.call(guestProcessorSubjects.quiesce(), QuiesceRequest, body, QuiesceResponse, ManagerTimeouts.quiesce);
  }

  thaw(body: BodyIn<typeof ThawRequest>) {
    return this.call(guestProcessorSubjects.thaw(), ThawRequest, body, ThawResponse, ManagerTimeouts.thaw);
  }

  snapshotCreate(hypervisorId: string, body: BodyIn<typeof SnapshotCreateRequest>) {
    return this.call(hypervisorSubjects.snapshotCreate(hypervisorId), SnapshotCreateRequest, body, SnapshotCreateResponse, ManagerTimeouts.snapshotCreate);
  }

  snapshotRemove(hypervisorId: string, body: BodyIn<typeof SnapshotRemoveRequest>) {
    return this.call(hypervisorSubjects.snapshotRemove(hypervisorId), SnapshotRemoveRequest, body, SnapshotRemoveResponse, ManagerTimeouts.snapshotRemove);
  }

  snapshotList(hypervisorId: string, body: BodyIn<typeof SnapshotListRequest>) {
    return this.call(hypervisorSubjects.snapshotList(hypervisorId), SnapshotListRequest, body, SnapshotListResponse);
  }

  vmCreate(hypervisorId: string, body: BodyIn<typeof VmCreateRequest>) {
    return this.call(hypervisorSubjects.vmCreate(hypervisorId), VmCreateRequest, body, VmCreateResponse, ManagerTimeouts.vmCreate);
  }

  backupOpen(targetMoverId: string, body: BodyIn<typeof BackupOpenRequest>) {
    return this.call(targetMoverSubjects.backupOpen(targetMoverId), BackupOpenRequest, body, ChannelOpened);
  }

  backupStart(proxyId: string, body: BodyIn<typeof BackupStartRequest>) {
    return this.call(sourceMoverSubjects.backupStart(proxyId), BackupStartRequest, body, TaskAccepted);
  }

  restoreOpen(proxyId: string, body: BodyIn<typeof RestoreOpenRequest>) {
    return this.call(sourceMoverSubjects.restoreOpen(proxyId), RestoreOpenRequest, body, ChannelOpened);
  }

  restoreStart(targetMoverId: string, body: BodyIn<typeof RestoreStartRequest>) {
    return this.call(targetMoverSubjects.restoreStart(targetMoverId), RestoreStartRequest, body, TaskAccepted);
  }

  verifyStart(targetMoverId: string, body: BodyIn<typeof VerifyStartRequest>) {
    return this.call(targetMoverSubjects.verifyStart(targetMoverId), VerifyStartRequest, body, TaskAccepted);
  }

  cancelTask(role: MoverRole, moverId: string, taskId: string, reason: string): Promise<Msg<typeof TaskCancelResponse>> {
    const subject = role === "src" ? sourceMoverSubjects.taskCancel(moverId) : targetMoverSubjects.taskCancel(moverId);
    return this.call(subject, TaskCancelRequest, { taskId, reason }, TaskCancelResponse);
  }

  commitRestorePoint(repositoryId: string, body: BodyIn<typeof CommitRestorePointRequest>) {
    return this.call(repositorySubjects.commit(repositoryId), CommitRestorePointRequest, body, CommitRestorePointResponse, ManagerTimeouts.commit);
  }

  getRestorePoint(repositoryId: string, restorePointId: string) {
    return this.call(repositorySubjects.get(repositoryId), GetRestorePointRequest, { restorePointId }, GetRestorePointResponse);
  }
}

/** Resolves after `ms`, or rejects with `canceled` as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The FerryError an aborted signal stands for (its reason when that is one). */
export function abortError(signal: AbortSignal): FerryError {
  const reason: unknown = signal.reason;
  if (reason instanceof FerryError) return reason;
  return new FerryError(ErrorCode.Canceled, reason instanceof Error ? reason.message : String(reason ?? "canceled"));
}

/**
 * Calls `fn` again while it fails with a retryable error (peer unavailable, timeout), up to
 * `attempts` times with a growing pause; a non-retryable error or an abort ends it at once.
 */
export async function withRetry<T>(fn: () => Promise<T>, opts: { attempts: number; signal?: AbortSignal; baseDelayMs?: number }): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const error = FerryError.from(err);
      if (!error.retryable || attempt >= opts.attempts) throw error;
      await sleep(Math.min(5_000, (opts.baseDelayMs ?? 500) * attempt), opts.signal);
    }
  }
}
