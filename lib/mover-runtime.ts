import { hostname } from "node:os";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import {
  Discover,
  ErrorCode,
  FerryError,
  HEARTBEAT_INTERVAL_MS,
  MoverHeartbeat,
  TaskDoneEvent,
  TaskFailedEvent,
  TaskProgressEvent,
  decode,
  encode,
  eventSubjects,
  schedulerSubjects,
  type MoverRole,
  type TaskOutcome,
  type TaskStats,
} from "../protocol/mod.js";
import type { Actor } from "./actor.js";
import type { ChannelReceiver, ChannelSender, Sealed } from "./datachannel.js";

/** How long an admission waits for a slot the mover has not freed yet. */
const ADMIT_WAIT_MS = 5_000;

/** A task a mover runs: its cancel switch and the session it belongs to. */
export interface MoverTask {
  taskId: string;
  sessionId: string;
  abort: AbortController;
  startedAt: number;
}

/**
 * What both movers share: the task table behind their slots, heartbeats to the scheduler, and
 * the task events the manager waits for.
 */
export class MoverRuntime {
  readonly tasks = new Map<string, MoverTask>();
  private readonly slotFreed: Array<() => void> = [];
  private readonly shutdownListeners = new Map<MoverTask, () => void>();
  private readonly js: JetStreamClient;
  private heartbeatTimer?: NodeJS.Timeout;
  private draining = false;

  constructor(
    readonly actor: Actor,
    readonly role: MoverRole,
    readonly maxTasks: number,
    private readonly extra: () => { repositoryId?: string; freeBytes?: number } = () => ({}),
  ) {
    this.js = jetstream(actor.nc);
  }

  /** Starts heartbeats, answers the scheduler's discover, and reports `draining` once stopping. */
  start(): void {
    const nc = this.actor.nc;
    nc.subscribe(schedulerSubjects.discover(), {
      callback: (err, msg) => {
        if (err) return;
        try {
          decode(Discover, msg.data);
          this.heartbeat();
        } catch (e) {
          this.actor.log.warn({ err: (e as Error).message }, "ignored malformed discover");
        }
      },
    });
    this.heartbeat();
    this.heartbeatTimer = setInterval(() => this.heartbeat(), HEARTBEAT_INTERVAL_MS);
    this.heartbeatTimer.unref();
    this.actor.onDrain(() => {
      this.draining = true;
      this.heartbeat();
    });
    this.actor.onStop(() => clearInterval(this.heartbeatTimer));
  }

  heartbeat(): void {
    const extra = this.extra();
    try {
      this.actor.nc.publish(
        schedulerSubjects.heartbeat(this.role, this.actor.id),
        encode(MoverHeartbeat, {
          moverId: this.actor.id,
          role: this.role === "src" ? "source" : "target",
          host: hostname(),
          maxTasks: this.maxTasks,
          activeTasks: [...this.tasks.keys()],
          ...extra,
          state: this.draining ? "draining" : "serving",
          startedAt: this.actor.startedAt,
          sentAt: Date.now(),
        }),
      );
    } catch (err) {
      this.actor.log.warn({ err: (err as Error).message }, "heartbeat not sent");
    }
  }

  /**
   * Takes a slot for a task. The scheduler owns the slots; the mover's own count can lag by the
   * moment between a task's terminal event (which lets the scheduler reassign its slot) and the
   * task's last cleanup here, so a full mover waits briefly for a slot before refusing.
   */
  async admit(taskId: string, sessionId: string): Promise<MoverTask> {
    if (this.draining) throw new FerryError(ErrorCode.Unavailable, `${this.actor.role} ${this.actor.id} is draining`);
    if (this.tasks.has(taskId)) throw new FerryError(ErrorCode.Conflict, `task ${taskId} is already running here`, { retryable: false });
    const deadline = Date.now() + ADMIT_WAIT_MS;
    while (this.tasks.size >= this.maxTasks) {
      if (Date.now() >= deadline) {
        throw new FerryError(ErrorCode.Unavailable, `${this.actor.role} ${this.actor.id} has all ${this.maxTasks} slots busy`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.slotFreed.push(() => (clearTimeout(timer), resolve()));
      });
      if (this.draining) throw new FerryError(ErrorCode.Unavailable, `${this.actor.role} ${this.actor.id} is draining`);
      if (this.tasks.has(taskId)) throw new FerryError(ErrorCode.Conflict, `task ${taskId} is already running here`, { retryable: false });
    }
    const task: MoverTask = { taskId, sessionId, abort: new AbortController(), startedAt: Date.now() };
    // Draining past its deadline aborts every running task (the listener goes when the task does).
    const onShutdown = () => task.abort.abort(this.actor.shutdownSignal.reason);
    this.actor.shutdownSignal.addEventListener("abort", onShutdown, { once: true });
    this.shutdownListeners.set(task, onShutdown);
    this.tasks.set(taskId, task);
    this.heartbeat();
    return task;
  }

  /** Frees a task's slot (idempotent) and wakes one admission waiting for it. */
  private release(task: MoverTask): void {
    if (this.tasks.get(task.taskId) !== task) return;
    this.tasks.delete(task.taskId);
    const onShutdown = this.shutdownListeners.get(task);
    if (onShutdown) this.actor.shutdownSignal.removeEventListener("abort", onShutdown);
    this.shutdownListeners.delete(task);
    this.heartbeat();
    this.slotFreed.shift()?.();
  }

  /** Gives back the slot of a task that could not start (its request is answered with the error). */
  abandon(task: MoverTask): void {
    this.release(task);
  }

  /** Runs the task's work in the background, tracked for draining; the slot is freed when it ends. */
  run(task: MoverTask, work: () => Promise<void>): void {
    const done = work()
      .catch((err: unknown) => {
        this.actor.log.error({ taskId: task.taskId, err: (err as Error).message }, "task ended with an unreported error");
      })
      .finally(() => this.release(task));
    void this.actor.track(done);
  }

  /**
   * Runs a task whose side receives on a data channel: canceling it fails the channel, the seal
   * is reported as the task's done event, any failure as its failed event; `cleanup` always runs.
   */
  receive(task: MoverTask, receiver: ChannelReceiver, stats: TaskStats, hooks: { sealed?: (sealed: Sealed) => void; cleanup?: () => Promise<void> | void } = {}): void {
    receiver.start();
    task.abort.signal.addEventListener("abort", () => receiver.fail(FerryError.from(task.abort.signal.reason, ErrorCode.Canceled)), { once: true });
    this.run(task, async () => {
      // The slot is free before the terminal event goes out: the event lets the scheduler hand it on.
      try {
        const sealed = await receiver.done;
        await hooks.cleanup?.();
        this.release(task);
        await this.done(task, sealed.stats, sealed.outcome);
        hooks.sealed?.(sealed);
      } catch (err) {
        await hooks.cleanup?.();
        this.release(task);
        await this.failed(task, stats, FerryError.from(err, ErrorCode.Io));
      }
    });
  }

  /**
   * Runs a task whose side sends on a data channel: progress is reported while `work` runs (it
   * ends with the receiver's seal); a failure aborts the channel and is the task's failed event.
   */
  send(task: MoverTask, sender: ChannelSender, stats: TaskStats, work: () => Promise<void>, cleanup?: () => Promise<void>): void {
    this.run(task, async () => {
      const stopReports = this.reportProgress(task, stats);
      try {
        await work();
        this.progress(task, stats);
      } catch (err) {
        const error = this.failureOf(task, err);
        sender.abort(error);
        await this.failed(task, stats, error);
      } finally {
        stopReports();
        sender.close();
        await cleanup?.();
      }
    });
  }

  /** What a task failed with: the reason it was canceled, if it was, else the error. */
  failureOf(task: MoverTask, err: unknown): FerryError {
    return FerryError.from(task.abort.signal.aborted ? task.abort.signal.reason : err, ErrorCode.Io);
  }

  cancel(taskId: string, reason: string): boolean {
    const task = this.tasks.get(taskId);
    if (!task) return false;
    task.abort.abort(new FerryError(ErrorCode.Canceled, reason, { retryable: false }));
    return true;
  }

  /** A progress event, fire-and-forget (the stream keeps it; losing one is harmless). */
  progress(task: MoverTask, stats: TaskStats): void {
    this.actor.nc.publish(
      eventSubjects.task(this.role, task.sessionId, task.taskId, "progress"),
      encode(TaskProgressEvent, { sessionId: task.sessionId, taskId: task.taskId, moverId: this.actor.id, at: Date.now(), stats }),
    );
  }

  /** The task's terminal events are acknowledged by JetStream: the manager must not miss them. */
  async done(task: MoverTask, stats: TaskStats, outcome: TaskOutcome): Promise<void> {
    await this.js.publish(
      eventSubjects.task(this.role, task.sessionId, task.taskId, "done"),
      encode(TaskDoneEvent, { sessionId: task.sessionId, taskId: task.taskId, moverId: this.actor.id, at: Date.now(), stats, outcome }),
    );
  }

  async failed(task: MoverTask, stats: TaskStats, error: FerryError): Promise<void> {
    this.actor.log.warn({ taskId: task.taskId, sessionId: task.sessionId, code: error.code, err: error.message }, "task failed");
    try {
      await this.js.publish(
        eventSubjects.task(this.role, task.sessionId, task.taskId, "failed"),
        encode(TaskFailedEvent, { sessionId: task.sessionId, taskId: task.taskId, moverId: this.actor.id, at: Date.now(), stats, error: error.toWire() }),
      );
    } catch (err) {
      this.actor.log.error({ taskId: task.taskId, err: (err as Error).message }, "could not publish task failure");
    }
  }

  /** Reports the task's progress about once a second until the returned function stops it. */
  reportProgress(task: MoverTask, stats: TaskStats, intervalMs = 1_000): () => void {
    const timer = setInterval(() => this.progress(task, stats), intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }
}
