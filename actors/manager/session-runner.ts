import type { JetStreamClient } from "@nats-io/jetstream";
import type { ConfigStore } from "../../lib/config-store.js";
import type { Logger } from "../../lib/log.js";
import type { SessionStore, StoredSession } from "../../lib/session-store.js";
import { ErrorCode, FerryError, SessionKind, SessionState } from "../../protocol/mod.js";
import { runBackupSession } from "./backup-session.js";
import { abortError, type ManagerClients } from "./clients.js";
import { runRestoreSession } from "./restore-session.js";
import { SessionRecorder } from "./session-recorder.js";
import { TaskEventHub } from "./task-events.js";
import type { SessionContext } from "./task-runner.js";
import type { ParsedTrigger } from "./trigger-consumer.js";
import { runVerifySession } from "./verify-session.js";

export interface SessionDeps {
  managerId: string;
  js: JetStreamClient;
  store: SessionStore;
  config: ConfigStore;
  clients: ManagerClients;
  log: Logger;
  silenceMs: number;
  /** Aborted when the manager's drain runs out of time. */
  shutdownSignal: AbortSignal;
  /** Counts late clean-up as in-flight work of the actor. */
  track: <T>(work: Promise<T>) => Promise<T>;
}

/** Runs one session from its created record to `completed` and its `ended` event. */
export class SessionRunner {
  private readonly abort = new AbortController();
  private readonly recorder: SessionRecorder;

  constructor(
    private readonly deps: SessionDeps,
    stored: StoredSession,
    private readonly trigger: ParsedTrigger,
  ) {
    this.recorder = new SessionRecorder(stored.session, deps.store, deps.js, deps.log);
  }

  get id(): string {
    return this.recorder.id;
  }

  /** Operator stop: the session goes `stopping`, its tasks are canceled and it ends failed. */
  stop(reason: string): boolean {
    if (this.abort.signal.aborted || this.recorder.record.state === SessionState.Completed) return false;
    this.recorder.record.state = SessionState.Stopping;
    this.recorder.logLine("warning", `stop requested: ${reason}`);
    void this.recorder.flush();
    this.abort.abort(new FerryError(ErrorCode.Canceled, reason, { retryable: false }));
    return true;
  }

  async run(): Promise<void> {
    const { deps, recorder } = this;
    const onShutdown = () =>
      this.abort.abort(new FerryError(ErrorCode.Canceled, `manager ${deps.managerId} shut down before the session ended`, { retryable: false }));
    if (deps.shutdownSignal.aborted) onShutdown();
    deps.shutdownSignal.addEventListener("abort", onShutdown, { once: true });

    const record = recorder.record;
    if (record.state === SessionState.Pending) record.state = SessionState.Running;
    record.startedAt = Date.now();
    await recorder.flush();

    let hub: TaskEventHub | undefined;
    try {
      hub = await TaskEventHub.open(deps.js, this.id, deps.log);
      const ctx: SessionContext = {
        recorder,
        clients: deps.clients,
        hub,
        signal: this.abort.signal,
        silenceMs: deps.silenceMs,
        log: deps.log,
        background: (work) => void deps.track(work.catch(() => undefined)),
      };
      const { trigger } = this;
      if (trigger.kind === SessionKind.Backup) await runBackupSession(ctx, trigger.body, { config: deps.config });
      else if (trigger.kind === SessionKind.Restore) await runRestoreSession(ctx, trigger.body);
      else await runVerifySession(ctx, trigger.body);
    } catch (err) {
      recorder.fail(FerryError.from(err));
    } finally {
      deps.shutdownSignal.removeEventListener("abort", onShutdown);
      await hub?.close();
    }
    if (this.abort.signal.aborted) recorder.fail(abortError(this.abort.signal));
    await recorder.complete();
  }
}
