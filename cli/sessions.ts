import { randomUUID } from "node:crypto";
import cliProgress from "cli-progress";
import {
  ErrorCode,
  FerryError,
  JobTrigger,
  PROTOCOL_VERSION,
  RestoreRequest,
  SessionKind,
  VerifyRequest,
  encode,
  msgIdFor,
  sessionIdFor,
  triggerSubjects,
  validate,
  type BodyIn,
  type SessionResult,
} from "../protocol/mod.js";
import type { Session } from "../lib/session-store.js";
import { requestedBy, type CliContext } from "./context.js";
import { formatBytes, formatRate, printJson } from "./format.js";
import { rateOf, renderSessionReport, sessionDurationMs, sessionSummaryJson } from "./report.js";

/**
 * Triggers (backup, restore, verify) published through JetStream with their idempotency key, and
 * waiting for the session they start by watching its record in the sessions KV.
 */

export interface Triggered {
  sessionId: string;
  requestId: string;
  /** JetStream had already seen this requestId: no new session was started. */
  duplicate: boolean;
}

/** A fresh idempotency key when the operator gives none. */
export function newRequestId(): string {
  return `cli-${randomUUID()}`;
}

/**
 * The session a repeated request belongs to: the first publish's, whose requestedAt we do not
 * know, so it is looked up by requestId (the manager may still be creating it).
 */
async function findSessionByRequest(ctx: CliContext, kind: SessionKind, requestId: string, timeoutMs = 10_000): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await ctx.sessions.list()).find((s) => s.kind === kind && s.requestId === requestId);
    if (found) return found.id;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function publishTrigger(ctx: CliContext, kind: SessionKind, subject: string, data: Uint8Array, requestId: string, requestedAt: number): Promise<Triggered> {
  let ack;
  try {
    ack = await ctx.js.publish(subject, data, { msgID: msgIdFor(kind, requestId) });
  } catch (err) {
    throw new FerryError(ErrorCode.Unavailable, `cannot publish the ${kind} request on ${subject}: ${(err as Error).message}`, { cause: err });
  }
  if (!ack.duplicate) return { sessionId: sessionIdFor(kind, requestId, requestedAt), requestId, duplicate: false };
  const existing = await findSessionByRequest(ctx, kind, requestId);
  if (!existing) {
    throw new FerryError(ErrorCode.Conflict, `request ${requestId} was already made, but its session is not recorded yet; look for it with \`ferry session list\``, {
      retryable: true,
    });
  }
  return { sessionId: existing, requestId, duplicate: true };
}

/** Publishes a JobTrigger; the job must exist in the configuration store. */
export async function triggerJob(ctx: CliContext, jobId: string, opts: { requestId?: string; reason?: string } = {}): Promise<Triggered> {
  const job = await ctx.config.getJob(jobId);
  if (!job) throw new FerryError(ErrorCode.NotFound, `job ${jobId} not found (\`ferry job list\` shows the jobs)`, { retryable: false });
  const requestId = opts.requestId ?? newRequestId();
  const requestedAt = Date.now();
  const body: BodyIn<typeof JobTrigger> = { jobId, requestId, requestedBy: requestedBy(), requestedAt, ...(opts.reason ? { reason: opts.reason } : {}) };
  const data = encode(JobTrigger, validate(JobTrigger, { ...body, v: PROTOCOL_VERSION, type: JobTrigger.type }));
  return publishTrigger(ctx, SessionKind.Backup, triggerSubjects.job(jobId), data, requestId, requestedAt);
}

type RequestBody<M extends typeof RestoreRequest | typeof VerifyRequest> = Omit<BodyIn<M>, "requestId" | "requestedBy" | "requestedAt">;

export async function triggerRestore(ctx: CliContext, body: RequestBody<typeof RestoreRequest>, requestId = newRequestId()): Promise<Triggered> {
  const requestedAt = Date.now();
  const full = validate(RestoreRequest, { ...body, requestId, requestedBy: requestedBy(), requestedAt, v: PROTOCOL_VERSION, type: RestoreRequest.type });
  return publishTrigger(ctx, SessionKind.Restore, triggerSubjects.restore(), encode(RestoreRequest, full), requestId, requestedAt);
}

export async function triggerVerify(ctx: CliContext, body: RequestBody<typeof VerifyRequest>, requestId = newRequestId()): Promise<Triggered> {
  const requestedAt = Date.now();
  const full = validate(VerifyRequest, { ...body, requestId, requestedBy: requestedBy(), requestedAt, v: PROTOCOL_VERSION, type: VerifyRequest.type });
  return publishTrigger(ctx, SessionKind.Verify, triggerSubjects.verify(), encode(VerifyRequest, full), requestId, requestedAt);
}

export interface WaitOptions {
  /** Show a progress bar (a TTY) or progress lines (otherwise) on stderr. */
  progress?: boolean;
  /** Give up after this long; unlimited by default. */
  timeoutMs?: number;
  /** Said once on stderr when no session record appeared after this long (default 15 s). */
  noManagerHintAfterMs?: number;
  signal?: AbortSignal;
}

/** Renders progress on stderr: a cli-progress bar on a terminal, a line every few seconds elsewhere. */
class ProgressView {
  private bar?: cliProgress.SingleBar;
  private lastLineAt = 0;
  private lastLine = "";

  constructor(private readonly label: string) {
    if (process.stderr.isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: `${label} [{bar}] {percentage}% | {done} of {size} | {rate} | VMs {vmsDone}/{vms} | {state}`,
          barsize: 24,
          hideCursor: true,
          clearOnComplete: false,
          etaBuffer: 20,
        },
        cliProgress.Presets.shades_classic,
      );
    }
  }

  update(session: Session): void {
    const total = Math.max(session.totalBytes, session.stats.processedBytes, 1);
    const vmsDone = session.vms.filter((v) => v.state === "succeeded" || v.state === "failed").length;
    const rate = formatRate(rateOf(session.stats.processedBytes, sessionDurationMs(session)));
    const payload = {
      done: formatBytes(session.stats.processedBytes),
      size: formatBytes(session.totalBytes),
      rate,
      vmsDone,
      vms: session.vms.length,
      state: session.result ?? session.state,
    };
    if (this.bar) {
      if (!this.bar.isActive) this.bar.start(total, 0, payload);
      this.bar.setTotal(total);
      this.bar.update(session.stats.processedBytes, payload);
      return;
    }
    // Before the manager has planned the session there is nothing worth a line.
    if (session.totalBytes === 0 && session.state !== "completed") return;
    const line = `${this.label}: ${payload.state}, ${payload.done} of ${payload.size}, ${rate}, VMs ${vmsDone}/${payload.vms}`;
    const now = Date.now();
    const changedState = !this.lastLine.startsWith(`${this.label}: ${payload.state},`);
    if (line !== this.lastLine && (changedState || now - this.lastLineAt >= 5_000 || session.state === "completed")) {
      process.stderr.write(`${line}\n`);
      this.lastLine = line;
      this.lastLineAt = now;
    }
  }

  stop(): void {
    this.bar?.stop();
  }
}

/** Watches a session's record until it is completed and returns the final record. */
export async function waitForSession(ctx: CliContext, sessionId: string, opts: WaitOptions = {}): Promise<Session> {
  const abort = new AbortController();
  const onAbort = () => abort.abort();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  let seen = false;
  let timedOut = false;
  const hint = setTimeout(() => {
    if (!seen) process.stderr.write(`ferry: no session record for ${sessionId} yet; is a manager running on this NATS server?\n`);
  }, opts.noManagerHintAfterMs ?? 15_000);
  hint.unref();
  const timeout =
    opts.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          abort.abort();
        }, opts.timeoutMs);
  const view = opts.progress ? new ProgressView(sessionId.split("-")[0] ?? "session") : undefined;
  try {
    for await (const session of ctx.sessions.watch(sessionId, abort.signal)) {
      seen = true;
      view?.update(session);
      if (session.state === "completed") return session;
    }
    if (timedOut) throw new FerryError(ErrorCode.Timeout, `session ${sessionId} did not complete within ${opts.timeoutMs} ms`);
    throw new FerryError(ErrorCode.Canceled, `stopped waiting for session ${sessionId}`);
  } finally {
    view?.stop();
    clearTimeout(hint);
    if (timeout) clearTimeout(timeout);
    opts.signal?.removeEventListener("abort", onAbort);
    abort.abort();
  }
}

/** Exit code for a finished session: 0 for success or warning, 1 for failed. */
export function exitCodeFor(result: SessionResult | undefined): number {
  return result === "success" || result === "warning" ? 0 : 1;
}

/**
 * The end of `job start`, `restore` and `verify`: print the session id (with `--json`, the trigger
 * and `extra`), or with `--wait` follow the session, print its report and set the exit code.
 */
export async function reportTriggered(ctx: CliContext, triggered: Triggered, opts: { wait?: boolean; json?: boolean }, extra: Record<string, unknown> = {}): Promise<void> {
  if (!opts.wait) {
    if (opts.json) printJson({ ...triggered, ...extra });
    else process.stdout.write(`${triggered.sessionId}\n`);
    return;
  }
  if (!opts.json) process.stderr.write(`session ${triggered.sessionId}\n`);
  const session = await waitForSession(ctx, triggered.sessionId, { progress: true });
  if (opts.json) printJson({ ...triggered, ...extra, session: sessionSummaryJson(session) });
  else process.stdout.write(`${renderSessionReport(session)}\n`);
  process.exitCode = exitCodeFor(session.result);
}
