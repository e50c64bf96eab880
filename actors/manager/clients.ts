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

  listVms(body: BodyIn<typeof ListVmsRequest>) {
    return request(this.nc, brokerSubjects.vms(), ListVmsRequest, body, ListVmsResponse, { timeoutMs: ManagerTimeouts.broker });
  }

  assign(body: BodyIn<typeof AssignRequest>) {
    const waitMs = body.waitMs ?? ManagerTimeouts.assignWaitMs;
    return request(this.nc, schedulerSubjects.assign(), AssignRequest, { ...body, waitMs }, AssignResponse, {
      timeoutMs: waitMs + ManagerTimeouts.assignMargin,
    });
  }

  release(taskId: string) {
    return request(this.nc, schedulerSubjects.release(), ReleaseRequest, { taskId }, ReleaseResponse, { timeoutMs: ManagerTimeouts.default });
  }

  quiesce(body: BodyIn<typeof QuiesceRequest>) {
    return request(this.nc, guestProcessorSubjects.quiesce(), QuiesceRequest, body, QuiesceResponse, { timeoutMs: ManagerTimeouts.quiesce });
  }

  thaw(body: BodyIn<typeof ThawRequest>) {
    return request(this.nc, guestProcessorSubjects.thaw(), ThawRequest, body, ThawResponse, { timeoutMs: ManagerTimeouts.thaw });
  }

  snapshotCreate(hypervisorId: string, body: BodyIn<typeof SnapshotCreateRequest>) {
    return request(this.nc, hypervisorSubjects.snapshotCreate(hypervisorId), SnapshotCreateRequest, body, SnapshotCreateResponse, {
      timeoutMs: ManagerTimeouts.snapshotCreate,
    });
  }

  snapshotRemove(hypervisorId: string, body: BodyIn<typeof SnapshotRemoveRequest>) {
    return request(this.nc, hypervisorSubjects.snapshotRemove(hypervisorId), SnapshotRemoveRequest, body, SnapshotRemoveResponse, {
      timeoutMs: ManagerTimeouts.snapshotRemove,
    });
  }

  snapshotList(hypervisorId: string, body: BodyIn<typeof SnapshotListRequest>) {
    return request(this.nc, hypervisorSubjects.snapshotList(hypervisorId), SnapshotListRequest, body, SnapshotListResponse, {
      timeoutMs: ManagerTimeouts.default,
    });
  }

  vmCreate(hypervisorId: string, body: BodyIn<typeof VmCreateRequest>) {
    return request(this.nc, hypervisorSubjects.vmCreate(hypervisorId), VmCreateRequest, body, VmCreateResponse, {
      timeoutMs: ManagerTimeouts.vmCreate,
    });
  }

  backupOpen(targetMoverId: string, body: BodyIn<typeof BackupOpenRequest>) {
    return request(this.nc, targetMoverSubjects.backupOpen(targetMoverId), BackupOpenRequest, body, ChannelOpened, {
      timeoutMs: ManagerTimeouts.default,
    });
  }

  backupStart(proxyId: string, body: BodyIn<typeof BackupStartRequest>) {
    return request(this.nc, sourceMoverSubjects.backupStart(proxyId), BackupStartRequest, body, TaskAccepted, {
      timeoutMs: ManagerTimeouts.default,
    });
  }

  restoreOpen(proxyId: string, body: BodyIn<typeof RestoreOpenRequest>) {
    return request(this.nc, sourceMoverSubjects.restoreOpen(proxyId), RestoreOpenRequest, body, ChannelOpened, {
      timeoutMs: ManagerTimeouts.default,
    });
  }

  restoreStart(targetMoverId: string, body: BodyIn<typeof RestoreStartRequest>) {
    return request(this.nc, targetMoverSubjects.restoreStart(targetMoverId), RestoreStartRequest, body, TaskAccepted, {
      timeoutMs: ManagerTimeouts.default,
    });
  }

  verifyStart(targetMoverId: string, body: BodyIn<typeof VerifyStartRequest>) {
    return request(this.nc, targetMoverSubjects.verifyStart(targetMoverId), VerifyStartRequest, body, TaskAccepted, {
      timeoutMs: ManagerTimeouts.default,
    });
  }

  cancelTask(role: MoverRole, moverId: string, taskId: string, reason: string): Promise<Msg<typeof TaskCancelResponse>> {
    const subject = role === "src" ? sourceMoverSubjects.taskCancel(moverId) : targetMoverSubjects.taskCancel(moverId);
    return request(this.nc, subject, TaskCancelRequest, { taskId, reason }, TaskCancelResponse, { timeoutMs: ManagerTimeouts.default });
  }

  commitRestorePoint(repositoryId: string, body: BodyIn<typeof CommitRestorePointRequest>) {
    return request(this.nc, repositorySubjects.commit(repositoryId), CommitRestorePointRequest, body, CommitRestorePointResponse, {
      timeoutMs: ManagerTimeouts.commit,
    });
  }

  getRestorePoint(repositoryId: string, restorePointId: string) {
    return request(this.nc, repositorySubjects.get(repositoryId), GetRestorePointRequest, { restorePointId }, GetRestorePointResponse, {
      timeoutMs: ManagerTimeouts.default,
    });
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
