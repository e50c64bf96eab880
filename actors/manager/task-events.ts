import { DeliverPolicy, type Consumer, type ConsumerMessages, type JetStreamClient } from "@nats-io/jetstream";
import type { Logger } from "../../lib/log.js";
import {
  MoverRole,
  Streams,
  TaskDoneEvent,
  TaskEventKind,
  TaskFailedEvent,
  TaskProgressEvent,
  decode,
  eventSubjects,
  type Msg,
} from "../../protocol/mod.js";

export type TaskEvent =
  | { kind: typeof TaskEventKind.Progress; role: MoverRole; event: Msg<typeof TaskProgressEvent> }
  | { kind: typeof TaskEventKind.Done; role: MoverRole; event: Msg<typeof TaskDoneEvent> }
  | { kind: typeof TaskEventKind.Failed; role: MoverRole; event: Msg<typeof TaskFailedEvent> };

export type InboxResult = { type: "event"; event: TaskEvent } | { type: "silent" } | { type: "aborted" };

/** One task's events in arrival order; events that come before anyone waits are kept. */
export class TaskInbox {
  private readonly queue: TaskEvent[] = [];
  private wake?: () => void;

  push(event: TaskEvent): void {
    this.queue.push(event);
    this.wake?.();
  }

  /** The next event, or `silent` after `silenceMs` without one, or `aborted`. */
  async next(silenceMs: number, signal: AbortSignal): Promise<InboxResult> {
    const queued = this.queue.shift();
    if (queued) return { type: "event", event: queued };
    if (signal.aborted) return { type: "aborted" };
    const outcome = await new Promise<"event" | "silent" | "aborted">((resolve) => {
      const done = (what: "event" | "silent" | "aborted") => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.wake = undefined;
        resolve(what);
      };
      const onAbort = () => done("aborted");
      const timer = setTimeout(() => done("silent"), silenceMs);
      signal.addEventListener("abort", onAbort, { once: true });
      this.wake = () => done("event");
    });
    if (outcome !== "event") return { type: outcome };
    const event = this.queue.shift();
    return event ? { type: "event", event } : { type: "silent" };
  }
}

/**
 * The movers' task events of one session, read through a JetStream ordered consumer on the
 * session's subjects. It starts at the stream's next sequence as of `open`, before any task is
 * started, so no event is missed, and it recovers by itself from reconnects and gaps.
 */
export class TaskEventHub {
  private readonly inboxes = new Map<string, TaskInbox>();
  private readonly loop: Promise<void>;

  private constructor(
    private readonly sessionId: string,
    private readonly consumer: Consumer,
    private readonly messages: ConsumerMessages,
    private readonly log: Logger,
  ) {
    this.loop = this.run();
  }

  static async open(js: JetStreamClient, sessionId: string, log: Logger): Promise<TaskEventHub> {
    const jsm = await js.jetstreamManager();
    const info = await jsm.streams.info(Streams.events);
    const consumer = await js.consumers.get(Streams.events, {
      filter_subjects: eventSubjects.moverTasks(sessionId),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: info.state.last_seq + 1,
    });
    const messages = await consumer.consume();
    return new TaskEventHub(sessionId, consumer, messages, log);
  }

  inbox(taskId: string): TaskInbox {
    let inbox = this.inboxes.get(taskId);
    if (!inbox) {
      inbox = new TaskInbox();
      this.inboxes.set(taskId, inbox);
    }
    return inbox;
  }

  private async run(): Promise<void> {
    try {
      for await (const msg of this.messages) this.dispatch(msg.subject, msg.data);
    } catch (err) {
      this.log.error({ sessionId: this.sessionId, err: (err as Error).message }, "task event consumer ended");
    }
  }

  /** `ferry.evt.<src|tgt>.<sessionId>.<taskId>.<progress|done|failed>` */
  private dispatch(subject: string, data: Uint8Array): void {
    const tokens = subject.split(".");
    const [, , role, sessionId, taskId, kind] = tokens;
    try {
      if (tokens.length !== 6 || sessionId !== this.sessionId || !taskId || (role !== MoverRole.Source && role !== MoverRole.Target)) {
        throw new Error("not a task event subject");
      }
      let event: TaskEvent;
      if (kind === TaskEventKind.Progress) event = { kind, role, event: decode(TaskProgressEvent, data) };
      else if (kind === TaskEventKind.Done) event = { kind, role, event: decode(TaskDoneEvent, data) };
      else if (kind === TaskEventKind.Failed) event = { kind, role, event: decode(TaskFailedEvent, data) };
      else throw new Error(`unknown task event kind ${String(kind)}`);
      if (event.event.taskId !== taskId || event.event.sessionId !== sessionId) {
        throw new Error(`event names task ${event.event.sessionId}/${event.event.taskId}, subject says ${sessionId}/${taskId}`);
      }
      this.inbox(taskId).push(event);
    } catch (err) {
      this.log.warn({ sessionId: this.sessionId, subject, err: (err as Error).message }, "ignoring invalid task event");
    }
  }

  async close(): Promise<void> {
    try {
      await this.messages.close();
      // The server would drop the idle consumer after minutes; a busy manager should not pile them up.
      await this.consumer.delete();
    } catch {
      // A consumer whose connection or server state is gone has nothing left to release.
    }
    await this.loop;
  }
}
