import type { Logger } from "../../lib/log.js";
import {
  ErrorCode,
  FerryError,
  MoverRole,
  TERMINAL_TASK_STATES,
  TaskEventKind,
  TaskState,
  type Assignment,
  type Msg,
  type TaskOutcome,
  type TaskRecord,
  type TaskStats,
  AssignResponse,
} from "../../protocol/mod.js";
import { abortError, sleep, withRetry, type ManagerClients } from "./clients.js";
import type { SessionRecorder } from "./session-recorder.js";
import { mergeTaskStats } from "./session-stats.js";
import type { TaskEventHub } from "./task-events.js";

/** What every kind of session gives its tasks. */
export interface SessionContext {
  recorder: SessionRecorder;
  clients: ManagerClients;
  hub: TaskEventHub;
  /** Aborted when the session is stopped or the manager shuts down. */
  signal: AbortSignal;
  /** A task whose movers report nothing for this long fails as silent. */
  silenceMs: number;
  log: Logger;
  /** Keeps late clean-up (a release after an abandoned long-poll) counted as in-flight work. */
  background: (work: Promise<unknown>) => void;
}

/** The kind-specific part of a task: how it is scheduled and how its movers are started. */
export interface TaskDriver {
  taskId: string;
  assign: { repositoryId: string; needsProxy: boolean; proxies: string[]; priority?: number };
  /** The mover that publishes `done`: the receiver of the data channel, or the verifier. */
  doneRole: MoverRole;
  /**
   * Runs once slots are assigned: prepares (e.g. waits for the VM snapshot), opens the channel
   * and starts the movers, resolving when the last one accepted. `started` records each mover
   * that may now be running the task, so a failure cancels it.
   */
  start: (assignment: Assignment, started: (role: MoverRole) => void) => Promise<void>;
  /** Checks a `done` outcome; an error returned fails the task instead (e.g. corrupt blocks). */
  accept: (outcome: TaskOutcome, task: TaskRecord) => FerryError | undefined;
  /** Stops the task before it reaches the scheduler or while it waits there (its VM failed). */
  signal?: AbortSignal;
}

/**
 * Drives one task through pending → queued → assigned → running → succeeded | failed | canceled,
 * and releases its scheduler slots exactly once whatever the end. Never throws: the outcome is
 * in the task record it returns.
 */
export async function runTask(ctx: SessionContext, driver: TaskDriver): Promise<TaskRecord> {
  const task = ctx.recorder.task(driver.taskId);
  const signal = driver.signal ? AbortSignal.any([ctx.signal, driver.signal]) : ctx.signal;
  const slots = new SlotReleaser(ctx, task.id);
  const movers = new Map<MoverRole, string>();
  try {
    const assignment = await assignSlots(ctx, driver, task, slots, signal);
    task.state = TaskState.Assigned;
    task.proxyId = assignment.proxyId;
    task.targetMoverId = assignment.targetMoverId;
    task.repositoryId = assignment.repositoryId;
    ctx.recorder.changed();
    try {
      await driver.start(assignment, (role) => {
        const moverId = role === MoverRole.Source ? assignment.proxyId : assignment.targetMoverId;
        if (moverId) movers.set(role, moverId);
      });
    } catch (err) {
      await cancelMovers(ctx, task.id, movers, "task could not start");
      throw err;
    }
    task.state = TaskState.Running;
    task.startedAt = Date.now();
    ctx.recorder.changed();
    ctx.recorder.logLine("info", `task ${task.id} running (${describeAssignment(assignment)})`, { vmId: task.vmId, taskId: task.id });
    await awaitTaskEnd(ctx, driver, task, movers, signal);
  } catch (err) {
    const error = FerryError.from(err);
    endTask(ctx, task, error.code === ErrorCode.Canceled ? TaskState.Canceled : TaskState.Failed, error);
  }
  await slots.release();
  return task;
}

function describeAssignment(a: Assignment): string {
  return a.proxyId ? `proxy ${a.proxyId}, target mover ${a.targetMoverId}` : `target mover ${a.targetMoverId}`;
}

function endTask(ctx: SessionContext, task: TaskRecord, state: TaskState, error?: FerryError): void {
  if (TERMINAL_TASK_STATES.has(task.state)) return;
  task.state = state;
  task.endedAt = Date.now();
  if (error) task.error = error.toWire();
  ctx.recorder.changed();
  const where = { vmId: task.vmId, taskId: task.id };
  if (state === TaskState.Succeeded) ctx.recorder.logLine("info", `task ${task.id} (${task.diskLabel}) succeeded`, where);
  else ctx.recorder.logLine("error", `task ${task.id} (${task.diskLabel}) ${state}: ${error?.message ?? "unknown error"}`, where);
}

/** Asks the scheduler until the task has slots, keeping its queue place with each long-poll. */
async function assignSlots(
  ctx: SessionContext,
  driver: TaskDriver,
  task: TaskRecord,
  slots: SlotReleaser,
  signal: AbortSignal,
): Promise<Assignment> {
  let failures = 0;
  for (;;) {
    if (signal.aborted) throw abortError(signal);
    const inFlight = ctx.clients.assign({
      sessionId: ctx.recorder.id,
      taskId: task.id,
      repositoryId: driver.assign.repositoryId,
      needsProxy: driver.assign.needsProxy,
      proxies: driver.assign.proxies,
      ...(driver.assign.priority === undefined ? {} : { priority: driver.assign.priority }),
    });
    slots.asked(inFlight);
    let res: Msg<typeof AssignResponse>;
    try {
      res = await raceAbort(inFlight, signal);
    } catch (err) {
      if (signal.aborted) throw abortError(signal);
      const error = FerryError.from(err);
      if (!error.retryable) throw new FerryError(error.code, `scheduler refused task: ${error.message}`, { retryable: false });
      if (failures++ === 0) {
        ctx.recorder.logLine("warning", `scheduler not reachable (${error.message}); retrying`, { vmId: task.vmId, taskId: task.id });
      }
      await sleep(Math.min(5_000, 500 * failures), signal);
      continue;
    }
    failures = 0;
    if (res.status === "assigned") {
      const assignment = res.assignment;
      if (!assignment || assignment.taskId !== task.id) {
        throw new FerryError(ErrorCode.Internal, `scheduler answered assigned without an assignment for task ${task.id}`);
      }
      if (driver.assign.needsProxy && !assignment.proxyId) {
        throw new FerryError(ErrorCode.Internal, `scheduler assigned task ${task.id} without a proxy`);
      }
      return assignment;
    }
    if (task.state !== TaskState.Queued) {
      task.state = TaskState.Queued;
      task.queuedAt = Date.now();
      ctx.recorder.logLine("info", `task ${task.id} waiting for resources${res.reason ? `: ${res.reason}` : ""}`, {
        vmId: task.vmId,
        taskId: task.id,
      });
    }
    ctx.recorder.changed();
  }
}

/** Waits for the task's terminal event, tracking progress; cancels the movers on stop or silence. */
async function awaitTaskEnd(
  ctx: SessionContext,
  driver: TaskDriver,
  task: TaskRecord,
  movers: Map<MoverRole, string>,
  signal: AbortSignal,
): Promise<void> {
  const inbox = ctx.hub.inbox(task.id);
  const reports: Partial<Record<MoverRole, TaskStats>> = {};
  // Only reports of the task's own movers count as signs of life.
  let silentAt = Date.now() + ctx.silenceMs;
  const foreignMovers = new Set<string>();
  for (;;) {
    const next = await inbox.next(Math.max(0, silentAt - Date.now()), signal);
    if (next.type === "aborted") {
      const error = abortError(signal);
      await cancelMovers(ctx, task.id, movers, error.message);
      throw new FerryError(ErrorCode.Canceled, error.message, { retryable: false });
    }
    if (next.type === "silent") {
      const error = new FerryError(ErrorCode.Timeout, `mover silent: no report for ${Math.round(ctx.silenceMs / 1000)} s`);
      await cancelMovers(ctx, task.id, movers, error.message);
      throw error;
    }
    const { event } = next;
    const assigned = event.role === MoverRole.Source ? task.proxyId : task.targetMoverId;
    if (event.event.moverId !== assigned) {
      // Once per foreign mover: one that keeps reporting must not flood the log.
      if (foreignMovers.has(event.event.moverId)) continue;
      foreignMovers.add(event.event.moverId);
      ctx.log.warn(
        { sessionId: ctx.recorder.id, taskId: task.id, role: event.role, moverId: event.event.moverId, assigned, kind: event.kind },
        "ignoring a task event from a mover not assigned to the task",
      );
      continue;
    }
    silentAt = Date.now() + ctx.silenceMs;
    reports[event.role] = event.event.stats;
    task.stats = mergeTaskStats(reports[MoverRole.Source], reports[MoverRole.Target]);
    ctx.recorder.changed();
    if (event.kind === TaskEventKind.Failed) {
      const others = new Map([...movers].filter(([role]) => role !== event.role));
      await cancelMovers(ctx, task.id, others, `peer failed: ${event.event.error.message}`);
      throw FerryError.fromWire(event.event.error);
    }
    // The sender finishing is not the end: only the receiver knows the data is durable.
    if (event.kind === TaskEventKind.Done && event.role === driver.doneRole) {
      const rejection = driver.accept(event.event.outcome, task);
      if (rejection) throw rejection;
      endTask(ctx, task, TaskState.Succeeded);
      return;
    }
  }
}

async function cancelMovers(ctx: SessionContext, taskId: string, movers: Map<MoverRole, string>, reason: string): Promise<void> {
  await Promise.all(
    [...movers].map(async ([role, moverId]) => {
      try {
        await ctx.clients.cancelTask(role, moverId, taskId, reason);
      } catch (err) {
        // The mover may have ended the task already or be gone; its slot is still released below.
        ctx.log.debug({ taskId, moverId, err: (err as Error).message }, "task cancel not confirmed");
      }
    }),
  );
}

function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

/**
 * Releases a task's slots once. A long-poll still in flight when the task ended (stop while
 * queued) may yet come back `assigned`: then that assignment is released as soon as it arrives.
 */
class SlotReleaser {
  private last?: Promise<Msg<typeof AssignResponse>>;
  private settled = true;
  private released = false;

  constructor(
    private readonly ctx: SessionContext,
    private readonly taskId: string,
  ) {}

  asked(inFlight: Promise<Msg<typeof AssignResponse>>): void {
    this.last = inFlight;
    this.settled = false;
    const settle = () => {
      if (this.last === inFlight) this.settled = true;
    };
    inFlight.then(settle, settle);
  }

  async release(): Promise<void> {
    if (this.released || !this.last) return;
    this.released = true;
    if (!this.settled) {
      const late = this.last.then(
        (res) => (res.status === "assigned" ? this.send() : undefined),
        () => undefined,
      );
      this.ctx.background(late);
    }
    await this.send();
  }

  private async send(): Promise<void> {
    try {
      await withRetry(() => this.ctx.clients.release(this.taskId), { attempts: 3 });
    } catch (err) {
      // The scheduler reclaims slots of tasks its movers do not report (invariant 8).
      this.ctx.log.warn({ taskId: this.taskId, err: (err as Error).message }, "slot release failed");
    }
  }
}
