import type { JetStreamClient } from "@nats-io/jetstream";
import type { Logger } from "../../lib/log.js";
import type { Session, SessionStore } from "../../lib/session-store.js";
import {
  ErrorCode,
  FerryError,
  SessionEndedEvent,
  SessionLogEvent,
  SessionState,
  TaskState,
  encode,
  eventSubjects,
  type TaskRecord,
  type VmRecord,
  type WireError,
} from "../../protocol/mod.js";
import { aggregateSessionStats, computeSessionResult } from "./session-stats.js";

export type LogLevel = "info" | "warning" | "error";

/** At most one progress write per this interval; state changes ride along with the next write. */
export const PROGRESS_WRITE_INTERVAL_MS = 1_000;

/**
 * The running session's record, held in memory by its one runner and written to KV by
 * compare-and-set, throttled to about once a second. Also the session's voice on the bus: log
 * lines and the final `ended` event, published through JetStream so they are acknowledged.
 */
export class SessionRecorder {
  private lastWriteAt = 0;
  private writing?: Promise<boolean>;
  private timer?: NodeJS.Timeout;
  private dirty = false;
  private closed = false;
  /** Set when the stored record was completed by someone else; from then on nothing is written. */
  private lost = false;
  /** Log events go out one after another so they keep their order; `ended` follows them. */
  private publishChain: Promise<void> = Promise.resolve();

  constructor(
    readonly record: Session,
    private readonly store: SessionStore,
    private readonly js: JetStreamClient,
    private readonly log: Logger,
  ) {}

  get id(): string {
    return this.record.id;
  }

  task(taskId: string): TaskRecord {
    const task = this.record.tasks.find((t) => t.id === taskId);
    if (!task) throw new FerryError(ErrorCode.Internal, `session ${this.id} has no task ${taskId}`);
    return task;
  }

  vm(vmId: string): VmRecord {
    const vm = this.record.vms.find((v) => v.vmId === vmId);
    if (!vm) throw new FerryError(ErrorCode.Internal, `session ${this.id} has no VM ${vmId}`);
    return vm;
  }

  /** Sets the session's VMs and tasks and writes them at once, so watchers see the plan. */
  async plan(vms: VmRecord[], tasks: TaskRecord[]): Promise<void> {
    this.record.vms = vms;
    this.record.tasks = tasks;
    this.record.totalBytes = tasks.reduce((sum, t) => sum + t.sizeBytes, 0);
    await this.flush();
  }

  /** A VM of a restore or verify: succeeded when all its tasks did, else failed with the first error. */
  endVm(vmId: string, tasks: readonly TaskRecord[]): void {
    const vm = this.vm(vmId);
    const failed = tasks.find((t) => t.state !== TaskState.Succeeded);
    vm.state = failed ? "failed" : "succeeded";
    if (failed?.error) vm.error = failed.error;
    this.changed();
  }

  /** Records a change; it is written within about a second. */
  changed(): void {
    if (this.closed) return;
    this.dirty = true;
    if (this.timer || this.writing) return;
    const wait = Math.max(0, this.lastWriteAt + PROGRESS_WRITE_INTERVAL_MS - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.write();
    }, wait);
  }

  /** Writes now (after a write in progress), for transitions others wait on; false if it failed. */
  async flush(): Promise<boolean> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.writing) await this.writing;
    this.dirty = true;
    return this.write();
  }

  private async write(): Promise<boolean> {
    if (this.writing) return this.writing;
    if (!this.dirty || this.lost) return !this.lost;
    this.dirty = false;
    this.writing = this.writeOnce().finally(() => {
      this.writing = undefined;
      this.lastWriteAt = Date.now();
      if (this.dirty && !this.closed) this.changed();
    });
    return this.writing;
  }

  private async writeOnce(): Promise<boolean> {
    this.refreshStats();
    const snapshot = structuredClone(this.record);
    try {
      await this.store.update(this.id, (stored) => {
        // Completed is terminal: only a retry of this recorder's own completion (same end time,
        // whose first write landed unconfirmed) may write it again, never one made elsewhere.
        const ownCompletion = snapshot.state === SessionState.Completed && stored.endedAt === snapshot.endedAt;
        if (stored.state === SessionState.Completed && !ownCompletion) {
          throw new FerryError(ErrorCode.Conflict, `session ${this.id} was completed by another manager`, { retryable: false });
        }
        Object.assign(stored, snapshot);
      });
      return true;
    } catch (err) {
      const error = FerryError.from(err);
      if (error.code === ErrorCode.Conflict && !error.retryable) {
        this.lost = true;
        this.log.error({ sessionId: this.id, err: error.message }, "session record taken over; no longer writing it");
        return false;
      }
      // The next change retries; a transient KV failure must not end the session.
      this.dirty = true;
      this.log.warn({ sessionId: this.id, err: error.message }, "session record write failed");
      return false;
    }
  }

  private refreshStats(): void {
    const start = this.record.startedAt ?? this.record.createdAt;
    const end = this.record.endedAt ?? Date.now();
    this.record.stats = aggregateSessionStats(this.record.tasks, end - start);
  }

  /** A line of the session's log, as the operator reads it (`ferry session log`). */
  logLine(level: LogLevel, message: string, where: { vmId?: string; taskId?: string } = {}): void {
    const pinoLevel = level === "warning" ? "warn" : level;
    this.log[pinoLevel]({ sessionId: this.id, ...where }, message);
    const event = encode(SessionLogEvent, { sessionId: this.id, at: Date.now(), level, message, ...where });
    this.publishChain = this.publishChain.then(() =>
      this.js.publish(eventSubjects.sessionLog(this.id), event).then(
        () => undefined,
        (err: unknown) => this.log.warn({ sessionId: this.id, err: (err as Error).message }, "session log event not published"),
      ),
    );
  }

  addWarning(message: string, where: { vmId?: string } = {}): void {
    if (where.vmId) this.vm(where.vmId).warnings.push(message);
    else this.record.warnings.push(message);
    this.logLine("warning", message, where);
    this.changed();
  }

  /** Session-level failure: the job could not run at all. */
  fail(error: FerryError | WireError): void {
    const wire = error instanceof FerryError ? error.toWire() : error;
    this.record.error ??= wire;
    this.logLine("error", wire.message);
  }

  /**
   * Ends the session: result, `completed`, the final record, then one `ended` event (with a
   * message id, so a retried publish is not stored twice).
   */
  async complete(): Promise<void> {
    if (this.closed) return;
    const record = this.record;
    record.endedAt = Date.now();
    record.result = computeSessionResult({
      kind: record.kind,
      error: record.error,
      warnings: record.warnings,
      vms: record.vms,
      tasks: record.tasks,
    });
    record.state = SessionState.Completed;
    this.logLine(record.result === "failed" ? "error" : record.result === "warning" ? "warning" : "info", `session ended: ${record.result}`);
    // The completed record is what `--wait` and the next redelivery look for: keep trying.
    for (let attempt = 1; !(await this.flush()) && !this.lost && attempt < 10; attempt++) {
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
    this.closed = true;
    await this.publishChain;
    if (this.lost) return;
    await publishSessionEnded(this.js, this.id, record.result, this.log);
  }
}

/** Publishes the one `ended` event of a session; retried under the same message id. */
export async function publishSessionEnded(js: JetStreamClient, sessionId: string, result: "success" | "warning" | "failed", log: Logger): Promise<void> {
  const data = encode(SessionEndedEvent, { sessionId, at: Date.now(), result });
  for (let attempt = 1; attempt <= 5; attempt++) {
    try {
      await js.publish(eventSubjects.sessionEnded(sessionId), data, { msgID: `ended:${sessionId}` });
      return;
    } catch (err) {
      log.warn({ sessionId, attempt, err: (err as Error).message }, "session ended event not published yet");
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  }
  log.error({ sessionId }, "session ended event could not be published");
}
