import type { JsMsg } from "@nats-io/jetstream";
import type { Actor } from "../../lib/actor.js";
import { errors } from "@nats-io/nats-core";
import type { SessionInput } from "../../lib/session-store.js";
import {
  ActiveSessionsRequest,
  ActiveSessionsResponse,
  ErrorCode,
  FerryError,
  SessionKind,
  SessionLogEvent,
  SessionResult,
  SessionState,
  StopSessionRequest,
  StopSessionResponse,
  TERMINAL_TASK_STATES,
  TaskState,
  decodeReply,
  encode,
  eventSubjects,
  isFerryError,
  managerSubjects,
  sessionIdFor,
} from "../../protocol/mod.js";
import { publishSessionEnded } from "./session-recorder.js";
import { SessionRunner, type SessionDeps } from "./session-runner.js";
import type { ParsedTrigger, StartedSession } from "./trigger-consumer.js";

const ABANDONED_MESSAGE = "abandoned: its manager stopped";

/** The sessions this manager instance runs, and how triggers become sessions. */
export class Manager {
  private readonly sessions = new Map<string, SessionRunner>();

  constructor(
    private readonly actor: Actor,
    private readonly deps: SessionDeps,
  ) {}

  activeSessionIds(): string[] {
    return [...this.sessions.keys()];
  }

  /** `ferry.svc.manager.<id>.stop` and `.active`. */
  serveEndpoints(): void {
    this.actor.endpoint({
      name: "stop",
      subject: managerSubjects.stop(this.actor.id),
      request: StopSessionRequest,
      response: StopSessionResponse,
      handler: async (req) => {
        const runner = this.sessions.get(req.sessionId);
        if (!runner) throw new FerryError(ErrorCode.NotFound, `session ${req.sessionId} is not running on manager ${this.actor.id}`);
        return { sessionId: req.sessionId, stopping: runner.stop(req.reason) };
      },
    });
    this.actor.endpoint({
      name: "active",
      subject: managerSubjects.active(this.actor.id),
      request: ActiveSessionsRequest,
      response: ActiveSessionsResponse,
      handler: async () => ({ managerId: this.actor.id, sessions: this.activeSessionIds() }),
    });
  }

  /**
   * Invariant 6: the record is created (fails if present) before the trigger is acknowledged, so
   * a redelivered trigger finds its session instead of starting a second one.
   */
  async accept(trigger: ParsedTrigger, msg: JsMsg): Promise<StartedSession | undefined> {
    const { kind, body } = trigger;
    const sessionId = sessionIdFor(kind, body.requestId, body.requestedAt);
    const now = Date.now();
    const initial: SessionInput = {
      id: sessionId,
      kind,
      ...(kind === SessionKind.Backup ? { jobId: trigger.body.jobId } : {}),
      requestId: body.requestId,
      requestedBy: body.requestedBy,
      requestedAt: body.requestedAt,
      owner: this.actor.id,
      state: SessionState.Pending,
      createdAt: now,
      updatedAt: now,
      vms: [],
      tasks: [],
      stats: {},
      totalBytes: 0,
      warnings: [],
    };
    let stored;
    try {
      stored = await this.deps.store.create(initial);
    } catch (err) {
      if (!isFerryError(err, ErrorCode.Conflict)) throw err;
      this.deps.log.info({ sessionId, kind, requestId: body.requestId }, "trigger delivered again; its session exists");
      await this.settleExisting(sessionId);
      await this.ack(msg, sessionId);
      return undefined;
    }
    const runner = new SessionRunner(this.deps, stored, trigger);
    this.sessions.set(sessionId, runner);
    this.deps.log.info({ sessionId, kind, requestId: body.requestId }, "session created");
    await this.ack(msg, sessionId);
    const run = runner
      .run()
      .catch((err: unknown) => this.deps.log.error({ sessionId, err: (err as Error).message }, "session runner failed"))
      .finally(() => this.sessions.delete(sessionId));
    return { sessionId, run: this.actor.track(run) };
  }

  private async ack(msg: JsMsg, sessionId: string): Promise<void> {
    try {
      await msg.ackAck({ timeout: 5_000 });
    } catch (err) {
      // A redelivery finds the record and sees this manager still runs the session.
      this.deps.log.warn({ sessionId, err: (err as Error).message }, "trigger ack not confirmed");
    }
  }

  /**
   * A trigger whose session exists: done if completed or still run by a live manager; otherwise
   * its manager died mid-session. Resuming is on the roadmap; for now the session is closed as
   * failed so it does not stay `running` forever.
   */
  private async settleExisting(sessionId: string): Promise<void> {
    if (this.sessions.has(sessionId)) return;
    const existing = await this.deps.store.get(sessionId);
    if (!existing || existing.session.state === SessionState.Completed) return;
    const owner = existing.session.owner;
    if (owner !== this.actor.id && (await this.ownerRuns(owner, sessionId))) return;

    let closedHere = false;
    const error = { code: ErrorCode.Unavailable, message: ABANDONED_MESSAGE, retryable: false };
    await this.deps.store.update(sessionId, (session) => {
      closedHere = session.state !== SessionState.Completed;
      if (!closedHere) return;
      const at = Date.now();
      session.state = SessionState.Completed;
      session.result = SessionResult.Failed;
      session.endedAt = at;
      session.error ??= error;
      for (const task of session.tasks) {
        if (!TERMINAL_TASK_STATES.has(task.state)) {
          task.state = TaskState.Failed;
          task.endedAt = at;
          task.error ??= error;
        }
      }
      for (const vm of session.vms) {
        if (vm.state === "pending" || vm.state === "running") {
          vm.state = "failed";
          vm.error ??= error;
        }
      }
    });
    if (!closedHere) return;
    this.deps.log.warn({ sessionId, owner }, "closed a session abandoned by its manager");
    try {
      await this.deps.js.publish(
        eventSubjects.sessionLog(sessionId),
        encode(SessionLogEvent, {
          sessionId,
          at: Date.now(),
          level: "error",
          message: `${ABANDONED_MESSAGE} (owner ${owner}); closed as failed by manager ${this.actor.id}; snapshots it made may need removal`,
        }),
      );
    } catch (err) {
      this.deps.log.warn({ sessionId, err: (err as Error).message }, "session log event not published");
    }
    await publishSessionEnded(this.deps.js, sessionId, SessionResult.Failed, this.deps.log);
  }

  /**
   * Whether the owner may still run the session. Only "nobody serves the owner's subject" proves
   * it gone: a draining owner answers `unavailable`, a busy one may time out, and both may still
   * be winding the session down.
   */
  private async ownerRuns(owner: string, sessionId: string): Promise<boolean> {
    let subject: string;
    try {
      subject = managerSubjects.active(owner);
    } catch {
      return false;
    }
    let reply;
    try {
      reply = await this.actor.nc.request(subject, encode(ActiveSessionsRequest, {}), { timeout: 2_000 });
    } catch (err) {
      const noResponders =
        err instanceof errors.NoRespondersError ||
        (err as Error)?.cause instanceof errors.NoRespondersError ||
        (err instanceof errors.RequestError && err.isNoResponders());
      if (!noResponders) this.deps.log.warn({ sessionId, owner, err: (err as Error).message }, "owner of an existing session did not answer; leaving it");
      return !noResponders;
    }
    try {
      return decodeReply(ActiveSessionsResponse, reply.data).sessions.includes(sessionId);
    } catch {
      return true;
    }
  }
}
