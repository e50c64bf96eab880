import { jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import type { Msg as NatsMsg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { ConfigStore } from "../../lib/config-store.js";
import { ensureJetStreamResources, openBucket } from "../../lib/jetstream-setup.js";
import { connectNats } from "../../lib/nats.js";
import { SessionStore, type Session } from "../../lib/session-store.js";
import {
  AssignRequest,
  AssignResponse,
  BackupOpenRequest,
  BackupStartRequest,
  Buckets,
  ChannelOpened,
  CommitRestorePointRequest,
  CommitRestorePointResponse,
  Consumers,
  ErrorCode,
  FerryError,
  GetRestorePointRequest,
  GetRestorePointResponse,
  JobTrigger,
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
  SnapshotRemoveRequest,
  SnapshotRemoveResponse,
  Streams,
  TaskAccepted,
  TaskCancelRequest,
  TaskCancelResponse,
  TaskDoneEvent,
  TaskFailedEvent,
  TaskProgressEvent,
  ThawRequest,
  ThawResponse,
  VerifyStartRequest,
  VmCreateRequest,
  VmCreateResponse,
  brokerSubjects,
  decode,
  encode,
  encodeError,
  eventSubjects,
  guestProcessorSubjects,
  hypervisorSubjects,
  msgIdFor,
  repositorySubjects,
  schedulerSubjects,
  sessionIdFor,
  sourceMoverSubjects,
  targetMoverSubjects,
  triggerSubjects,
  type BodyIn,
  type MessageDef,
  type Msg,
  type RestorePoint,
  type TaskOutcome,
  type TaskStats,
  type VmInfo,
} from "../../protocol/mod.js";
import { startTestNats } from "../harness/nats.js";

export const HV = "hv1";
export const REPO = "repo1";
export const PROXY = "proxy1";
export const TARGET = "tgt1";
export const MiB = 1024 * 1024;

/**
 * What a fake mover does with a task once started. `impostor`: a mover not assigned to the task
 * first reports it failed, then the real movers finish it; `impostor-only`: the real movers stay
 * silent while a foreign mover keeps reporting progress.
 */
export type TaskBehavior = "succeed" | "fail" | "silent" | "impostor" | "impostor-only";

/** A mover id the scheduler never assigns. */
export const IMPOSTOR = "mover-impostor";

export interface StartedTask {
  sessionId: string;
  taskId: string;
  kind: "backup" | "restore" | "verify";
  diskId: string;
  restorePointId: string;
  sizeBytes: number;
}

/**
 * Stand-ins for every actor the manager talks to, answering on the real subjects with the real
 * schemas, and recording what they were asked. Movers "run" a task by publishing the events a
 * real mover would, through JetStream.
 */
export class FakePeers {
  readonly js: JetStreamClient;
  readonly subs: Subscription[] = [];
  vms: VmInfo[] = [];
  restorePoints = new Map<string, RestorePoint>();
  behavior: (task: StartedTask) => TaskBehavior = () => "succeed";
  /** Verify outcome per task (default: all blocks fine). */
  corruptBlocks: (task: StartedTask) => number = () => 0;
  quiesce: "ok" | "fail" = "ok";
  thawConsistent = true;

  readonly assigns: Msg<typeof AssignRequest>[] = [];
  readonly releases: string[] = [];
  readonly snapshotsCreated: Array<{ id: string; vmId: string; quiesced: boolean; sessionId?: string }> = [];
  readonly snapshotsRemoved: string[] = [];
  readonly commits: Msg<typeof CommitRestorePointRequest>[] = [];
  readonly started: StartedTask[] = [];
  readonly cancels: Array<{ role: "src" | "tgt"; taskId: string }> = [];
  readonly vmsCreated: Msg<typeof VmCreateRequest>[] = [];
  /** Guest and hypervisor calls in order, to check quiesce → snapshot → thaw. */
  readonly calls: string[] = [];
  private readonly opened = new Map<string, Msg<typeof BackupOpenRequest>>();
  private snapshotSeq = 0;

  constructor(readonly nc: NatsConnection) {
    this.js = jetstream(nc);
  }

  private serve<Req extends MessageDef, Res extends MessageDef>(
    subject: string,
    reqDef: Req,
    resDef: Res,
    handler: (req: Msg<Req>) => BodyIn<Res> | Promise<BodyIn<Res>>,
  ): void {
    const sub = this.nc.subscribe(subject, {
      callback: (err, msg: NatsMsg) => {
        if (err) return;
        void (async () => {
          try {
            const body = await handler(decode(reqDef, msg.data));
            msg.respond(encode(resDef, body));
          } catch (e) {
            msg.respond(encodeError(FerryError.from(e).toWire()));
          }
        })();
      },
    });
    this.subs.push(sub);
  }

  start(): void {
    this.serve(brokerSubjects.vms(), ListVmsRequest, ListVmsResponse, (req) => {
      const matches = (s: { id?: string; name?: string; tag?: string }, vm: VmInfo) =>
        s.id !== undefined ? s.id === vm.id : s.name !== undefined ? s.name === vm.name : vm.tags.includes(s.tag ?? "");
      return {
        vms: this.vms.filter((vm) => req.selectors.some((s) => matches(s, vm))),
        unmatched: req.selectors.filter((s) => !this.vms.some((vm) => matches(s, vm))),
        cachedAt: Date.now(),
      };
    });
    this.serve(schedulerSubjects.assign(), AssignRequest, AssignResponse, (req) => {
      this.assigns.push(req);
      return {
        status: "assigned" as const,
        assignment: {
          taskId: req.taskId,
          sessionId: req.sessionId,
          ...(req.needsProxy ? { proxyId: PROXY } : {}),
          targetMoverId: TARGET,
          repositoryId: req.repositoryId,
          assignedAt: Date.now(),
        },
      };
    });
    this.serve(schedulerSubjects.release(), ReleaseRequest, ReleaseResponse, (req) => {
      this.releases.push(req.taskId);
      return { released: true };
    });
    this.serve(guestProcessorSubjects.quiesce(), QuiesceRequest, QuiesceResponse, (req) => {
      this.calls.push(`quiesce ${req.vmId}`);
      if (this.quiesce === "fail") throw new FerryError(ErrorCode.Timeout, "VSS writer did not respond");
      return { vmId: req.vmId, freezeId: `fz-${req.vmId}`, frozenAt: Date.now(), applications: [{ name: "db", kind: "sql", state: "frozen" as const }] };
    });
    this.serve(guestProcessorSubjects.thaw(), ThawRequest, ThawResponse, (req) => {
      this.calls.push(`thaw ${req.vmId}`);
      return { vmId: req.vmId, consistent: this.thawConsistent, frozenMs: 50, applications: [] };
    });
    this.serve(hypervisorSubjects.snapshotCreate(HV), SnapshotCreateRequest, SnapshotCreateResponse, (req) => {
      const vm = this.vms.find((v) => v.id === req.vmId);
      if (!vm) throw new FerryError(ErrorCode.NotFound, `VM ${req.vmId} not found`);
      const id = `snap-${++this.snapshotSeq}`;
      this.snapshotsCreated.push({ id, vmId: vm.id, quiesced: req.quiesced, ...(req.sessionId ? { sessionId: req.sessionId } : {}) });
      this.calls.push(`snapshot ${req.vmId}`);
      return {
        snapshot: {
          id,
          vmId: vm.id,
          name: req.name,
          createdAt: Date.now(),
          quiesced: req.quiesced,
          disks: vm.disks.map((d) => ({ diskId: d.id, sizeBytes: d.sizeBytes, transport: { mode: "file" as const, path: `/fake/${vm.id}/${d.id}` } })),
        },
      };
    });
    this.serve(hypervisorSubjects.snapshotRemove(HV), SnapshotRemoveRequest, SnapshotRemoveResponse, (req) => {
      this.snapshotsRemoved.push(req.snapshotId);
      return { mergedBytes: 0 };
    });
    this.serve(hypervisorSubjects.vmCreate(HV), VmCreateRequest, VmCreateResponse, (req) => {
      this.vmsCreated.push(req);
      const id = `vm-new-${this.vmsCreated.length}`;
      const disks = req.disks.map((d, i) => ({ id: `disk${i}`, label: d.label, sizeBytes: d.sizeBytes, datastoreId: "ds1" }));
      return {
        vm: { id, name: req.name, hostId: req.hostId ?? "host1", powerState: "poweredOff" as const, guestOs: req.guestOs, tags: req.tags, guestAgent: false, disks },
        disks: disks.map((d) => ({ diskId: d.id, transport: { mode: "file" as const, path: `/fake/${id}/${d.id}` } })),
      };
    });
    this.serve(targetMoverSubjects.backupOpen(TARGET), BackupOpenRequest, ChannelOpened, (req) => {
      this.opened.set(req.taskId, req);
      return { taskId: req.taskId, moverId: TARGET, channel: { channelId: `ch${req.taskId.replace(/[^A-Za-z0-9]/g, "")}0000000000000000`.slice(0, 40), window: 8, maxFrameBytes: 65536 } };
    });
    this.serve(sourceMoverSubjects.backupStart(PROXY), BackupStartRequest, TaskAccepted, (req) => {
      const open = this.opened.get(req.taskId);
      if (!open) throw new FerryError(ErrorCode.NotFound, `no channel opened for ${req.taskId}`);
      const task: StartedTask = { sessionId: req.sessionId, taskId: req.taskId, kind: "backup", diskId: req.diskId, restorePointId: req.restorePointId, sizeBytes: req.sizeBytes };
      this.run(task, "src", "tgt", { kind: "backup", restorePointId: req.restorePointId, diskId: req.diskId, manifestDigest: `m-${req.diskId}` });
      return { taskId: req.taskId, moverId: PROXY };
    });
    this.serve(sourceMoverSubjects.restoreOpen(PROXY), RestoreOpenRequest, ChannelOpened, (req) => {
      this.pendingRestores.set(req.taskId, req);
      return { taskId: req.taskId, moverId: PROXY, channel: { channelId: "restorechannel00000000", window: 8, maxFrameBytes: 65536 } };
    });
    this.serve(targetMoverSubjects.restoreStart(TARGET), RestoreStartRequest, TaskAccepted, (req) => {
      const open = this.pendingRestores.get(req.taskId);
      if (!open) throw new FerryError(ErrorCode.NotFound, `no channel opened for ${req.taskId}`);
      const path = open.destination.kind === "file" ? open.destination.path : open.destination.transport.path;
      const task: StartedTask = { sessionId: req.sessionId, taskId: req.taskId, kind: "restore", diskId: req.diskId, restorePointId: req.restorePointId, sizeBytes: open.sizeBytes };
      this.run(task, "tgt", "src", { kind: "restore", path, sizeBytes: open.sizeBytes });
      return { taskId: req.taskId, moverId: TARGET };
    });
    this.serve(targetMoverSubjects.verifyStart(TARGET), VerifyStartRequest, TaskAccepted, (req) => {
      const rp = this.restorePoints.get(req.restorePointId);
      const disk = rp?.disks.find((d) => d.diskId === req.diskId);
      if (!disk) throw new FerryError(ErrorCode.NotFound, `no disk ${req.diskId}`);
      const task: StartedTask = { sessionId: req.sessionId, taskId: req.taskId, kind: "verify", diskId: req.diskId, restorePointId: req.restorePointId, sizeBytes: disk.sizeBytes };
      const corrupt = this.corruptBlocks(task);
      this.run(task, "tgt", "tgt", {
        kind: "verify",
        blocksChecked: disk.blocks,
        corruptBlocks: corrupt,
        corruptBlockIndexes: Array.from({ length: Math.min(corrupt, 4) }, (_, i) => i),
      });
      return { taskId: req.taskId, moverId: TARGET };
    });
    for (const role of ["src", "tgt"] as const) {
      const subject = role === "src" ? sourceMoverSubjects.taskCancel(PROXY) : targetMoverSubjects.taskCancel(TARGET);
      this.serve(subject, TaskCancelRequest, TaskCancelResponse, (req) => {
        this.cancels.push({ role, taskId: req.taskId });
        return { taskId: req.taskId, canceled: true };
      });
    }
    this.serve(repositorySubjects.commit(REPO), CommitRestorePointRequest, CommitRestorePointResponse, (req) => {
      this.commits.push(req);
      const restorePoint: RestorePoint = {
        ...req.restorePoint,
        repositoryId: REPO,
        committedAt: Date.now(),
        disks: req.disks.map((d) => ({ diskId: d.diskId, label: d.diskId, sizeBytes: MiB, blockSize: MiB, blocks: 1, zeroBlocks: 0, manifestDigest: d.manifestDigest })),
      };
      this.restorePoints.set(restorePoint.id, restorePoint);
      return { restorePoint };
    });
    this.serve(repositorySubjects.get(REPO), GetRestorePointRequest, GetRestorePointResponse, (req) => {
      const restorePoint = this.restorePoints.get(req.restorePointId);
      if (!restorePoint) throw new FerryError(ErrorCode.NotFound, `restore point ${req.restorePointId} not found`);
      return { restorePoint };
    });
  }

  private readonly pendingRestores = new Map<string, Msg<typeof RestoreOpenRequest>>();

  /** Plays a mover pair: progress from the sender, then done from the receiver (or failed). */
  private run(task: StartedTask, sender: "src" | "tgt", receiver: "src" | "tgt", outcome: TaskOutcome): void {
    this.started.push(task);
    const behavior = this.behavior(task);
    if (behavior === "silent") return;
    if (behavior === "impostor-only") {
      this.impersonate(task, receiver);
      return;
    }
    const half = Math.floor(task.sizeBytes / 2);
    const progress: TaskStats = { processedBytes: half, readBytes: half, dataBytes: half, transferredBytes: Math.floor(half / 2), storedBytes: 0, blocks: 1, zeroBlocksSkipped: 0, dedupedBlocks: 0, durationMs: 10 };
    const final: TaskStats = {
      processedBytes: task.sizeBytes,
      readBytes: task.sizeBytes,
      dataBytes: task.sizeBytes,
      transferredBytes: Math.floor(task.sizeBytes / 2),
      storedBytes: Math.floor(task.sizeBytes / 2),
      blocks: 2,
      zeroBlocksSkipped: 0,
      dedupedBlocks: 0,
      durationMs: 20,
    };
    const base = { sessionId: task.sessionId, taskId: task.taskId, at: Date.now() };
    void (async () => {
      if (behavior === "impostor") {
        await this.js.publish(
          eventSubjects.task(receiver, task.sessionId, task.taskId, "failed"),
          encode(TaskFailedEvent, { ...base, moverId: IMPOSTOR, stats: progress, error: { code: ErrorCode.Io, message: "failed by an impostor", retryable: false } }),
        );
      }
      await new Promise((r) => setTimeout(r, 30));
      await this.js.publish(eventSubjects.task(sender, task.sessionId, task.taskId, "progress"), encode(TaskProgressEvent, { ...base, moverId: sender === "src" ? PROXY : TARGET, stats: progress }));
      await new Promise((r) => setTimeout(r, 30));
      if (behavior === "fail") {
        await this.js.publish(
          eventSubjects.task(sender, task.sessionId, task.taskId, "failed"),
          encode(TaskFailedEvent, { ...base, moverId: sender === "src" ? PROXY : TARGET, stats: progress, error: { code: ErrorCode.Io, message: "read error at offset 4096", retryable: true } }),
        );
        return;
      }
      await this.js.publish(
        eventSubjects.task(receiver, task.sessionId, task.taskId, "done"),
        encode(TaskDoneEvent, { ...base, moverId: receiver === "src" ? PROXY : TARGET, stats: final, outcome }),
      );
    })().catch(() => undefined);
  }

  /** A foreign mover reports progress on the task every 300 ms, for 10 s. */
  private impersonate(task: StartedTask, role: "src" | "tgt"): void {
    void (async () => {
      for (let i = 0; i < 33 && !this.stopped; i++) {
        await this.js.publish(
          eventSubjects.task(role, task.sessionId, task.taskId, "progress"),
          encode(TaskProgressEvent, { sessionId: task.sessionId, taskId: task.taskId, moverId: IMPOSTOR, at: Date.now(), stats: { processedBytes: task.sizeBytes } }),
        );
        await new Promise((r) => setTimeout(r, 300));
      }
    })().catch(() => undefined);
  }

  private stopped = false;

  stop(): void {
    this.stopped = true;
    for (const sub of this.subs) sub.unsubscribe();
  }
}

export function vm(id: string, disks: number, opts: { guestAgent?: boolean; tags?: string[] } = {}): VmInfo {
  return {
    id,
    name: `${id}-name`,
    hostId: "host1",
    powerState: "poweredOn",
    guestOs: "linux",
    tags: opts.tags ?? [],
    guestAgent: opts.guestAgent ?? false,
    disks: Array.from({ length: disks }, (_, i) => ({ id: `disk${i}`, label: `Hard disk ${i + 1}`, sizeBytes: (4 + i * 4) * MiB, datastoreId: "ds1" })),
  };
}

/** A private NATS server with Ferry's JetStream state, a connection to it and the stores. */
export interface TestBus {
  url: string;
  nc: NatsConnection;
  js: JetStreamClient;
  config: ConfigStore;
  sessions: SessionStore;
  stop: () => Promise<void>;
}

export async function startBus(name: string): Promise<TestBus> {
  const nats = await startTestNats();
  try {
    const nc = await connectNats({ servers: nats.url, name });
    await ensureJetStreamResources(nc);
    return {
      url: nats.url,
      nc,
      js: jetstream(nc),
      config: new ConfigStore(await openBucket(nc, Buckets.config)),
      sessions: new SessionStore(await openBucket(nc, Buckets.sessions)),
      stop: async () => {
        await nc.close();
        await nats.stop();
      },
    };
  } catch (err) {
    await nats.stop();
    throw err;
  }
}

/** Publishes a job trigger as the CLI does (with its message id unless `msgId: false`); resolves to its session's id. */
export async function triggerJob(
  js: JetStreamClient,
  jobId: string,
  opts: { requestId: string; requestedAt?: number; msgId?: boolean },
): Promise<string> {
  const { requestId, requestedAt = Date.now() } = opts;
  await js.publish(
    triggerSubjects.job(jobId),
    encode(JobTrigger, { jobId, requestId, requestedBy: "test", requestedAt }),
    opts.msgId === false ? {} : { msgID: msgIdFor("backup", requestId) },
  );
  return sessionIdFor("backup", requestId, requestedAt);
}

/** Polls the session record until `done` holds for it. */
export async function waitForSession(sessions: SessionStore, sessionId: string, done: (s: Session) => boolean, timeoutMs = 20_000): Promise<Session> {
  const deadline = Date.now() + timeoutMs;
  let last: Session | undefined;
  while (Date.now() < deadline) {
    last = (await sessions.get(sessionId))?.session;
    if (last && done(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`session ${sessionId} did not reach the expected state in ${timeoutMs} ms; last: ${JSON.stringify(last?.state)} ${JSON.stringify(last?.tasks.map((t) => t.state))}`);
}

export const completed = (s: Session) => s.state === "completed";

/** Waits until the manager's durable consumer has every trigger delivered and acknowledged. */
export async function waitForTriggersSettled(nc: NatsConnection, timeoutMs = 10_000): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const info = await jsm.consumers.info(Streams.triggers, Consumers.manager);
    if (info.num_pending === 0 && info.num_ack_pending === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("triggers were not all acknowledged in time");
}

/** Collects messages of a core subscription (for events whose count matters). */
export function collect<T>(nc: NatsConnection, subject: string, parse: (data: Uint8Array, subject: string) => T): { items: T[]; stop: () => void } {
  const items: T[] = [];
  const sub = nc.subscribe(subject, {
    callback: (err, msg) => {
      if (!err) items.push(parse(msg.data, msg.subject));
    },
  });
  return { items, stop: () => sub.unsubscribe() };
}
