import type { Consumer, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { Logger } from "../../lib/log.js";
import {
  Consumers,
  ErrorCode,
  FerryError,
  JobTrigger,
  RestoreRequest,
  SessionKind,
  Streams,
  TriggerRejectedEvent,
  VerifyRequest,
  decode,
  encode,
  managerSubjects,
  triggerSubjects,
  type Msg,
} from "../../protocol/mod.js";

export type ParsedTrigger =
  | { kind: typeof SessionKind.Backup; body: Msg<typeof JobTrigger> }
  | { kind: typeof SessionKind.Restore; body: Msg<typeof RestoreRequest> }
  | { kind: typeof SessionKind.Verify; body: Msg<typeof VerifyRequest> };

const JOB_TRIGGER_PREFIX = triggerSubjects.job("x").slice(0, -1);

/** Decodes a trigger by its subject; throws `bad_request` or `unsupported_version` when it cannot be run. */
export function parseTrigger(subject: string, data: Uint8Array): ParsedTrigger {
  if (subject === triggerSubjects.restore()) return { kind: SessionKind.Restore, body: decode(RestoreRequest, data) };
  if (subject === triggerSubjects.verify()) return { kind: SessionKind.Verify, body: decode(VerifyRequest, data) };
  if (subject.startsWith(JOB_TRIGGER_PREFIX)) {
    const body = decode(JobTrigger, data);
    if (triggerSubjects.job(body.jobId) !== subject) {
      throw new FerryError(ErrorCode.BadRequest, `trigger for job ${body.jobId} was published on ${subject}`, { retryable: false });
    }
    return { kind: SessionKind.Backup, body };
  }
  throw new FerryError(ErrorCode.BadRequest, `no trigger kind is published on ${subject}`, { retryable: false });
}

/**
 * Accepts a trigger: creates its session record and acknowledges the message. Resolves to the
 * started session (its run holds a concurrency slot until it settles), or undefined when the trigger
 * needed no new session. Throws when the trigger should be delivered again later.
 */
export type TriggerHandler = (trigger: ParsedTrigger, msg: JsMsg) => Promise<StartedSession | undefined>;

/** Wrapped, because an async function returning a bare promise would wait for it to settle. */
export interface StartedSession {
  sessionId: string;
  run: Promise<void>;
}

/** How long one pull waits for a trigger; also the longest a drain waits for the pull to end. */
const PULL_EXPIRES_MS = 2_000;

/**
 * Pulls triggers from the durable consumer shared by all managers, one at a time and only while
 * fewer than `concurrency` sessions run here, so the other managers get the rest.
 */
export class TriggerConsumer {
  private running = 0;
  private stopped = false;
  private wake?: () => void;
  private loop?: Promise<void>;

  constructor(
    private readonly js: JetStreamClient,
    private readonly log: Logger,
    private readonly concurrency: number,
    private readonly handler: TriggerHandler,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops pulling; sessions already running go on. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }

  get activeSessions(): number {
    return this.running;
  }

  private async run(): Promise<void> {
    let consumer: Consumer | undefined;
    let failures = 0;
    while (!this.stopped) {
      while (this.running >= this.concurrency && !this.stopped) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
      }
      if (this.stopped) break;
      try {
        consumer ??= await this.js.consumers.get(Streams.triggers, Consumers.manager);
        const msg = await consumer.next({ expires: PULL_EXPIRES_MS });
        failures = 0;
        if (!msg) continue;
        if (this.stopped) {
          // Pulled while draining: give it straight back for another manager.
          msg.nak();
          break;
        }
        await this.handle(msg);
      } catch (err) {
        if (failures++ === 0) this.log.warn({ err: (err as Error).message }, "pulling triggers failed; retrying");
        consumer = undefined;
        await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * failures)));
      }
    }
  }

  private async handle(msg: JsMsg): Promise<void> {
    let trigger: ParsedTrigger;
    try {
      trigger = parseTrigger(msg.subject, msg.data);
    } catch (err) {
      await this.reject(msg, FerryError.from(err, ErrorCode.BadRequest));
      return;
    }
    try {
      const session = await this.handler(trigger, msg);
      if (session) {
        this.running++;
        const done = () => {
          this.running--;
          this.wake?.();
        };
        session.run.then(done, done);
      }
    } catch (err) {
      // The session record could not be created (KV unreachable): let JetStream deliver it again.
      const error = FerryError.from(err);
      this.log.warn(
        { subject: msg.subject, streamSeq: msg.seq, deliveries: msg.info.deliveryCount, err: error.message },
        "trigger not accepted; it will be delivered again",
      );
      msg.nak(2_000);
    }
  }

  /** A trigger that can never run: terminated (no redelivery) and reported on the bus. */
  private async reject(msg: JsMsg, error: FerryError): Promise<void> {
    this.log.warn({ subject: msg.subject, streamSeq: msg.seq, code: error.code, err: error.message }, "trigger rejected");
    msg.term(error.message.slice(0, 200));
    try {
      await this.js.publish(
        managerSubjects.triggerRejected(),
        encode(TriggerRejectedEvent, { at: Date.now(), subject: msg.subject, streamSeq: msg.seq, error: error.toWire() }),
      );
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "trigger rejected event not published");
    }
  }
}
