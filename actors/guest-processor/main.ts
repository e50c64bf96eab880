import type { ActorCliOptions } from "../../cli/commands/actor.js";
import { Actor } from "../../lib/actor.js";
import { newId } from "../../lib/ids.js";
import { request } from "../../lib/rpc.js";
import {
  AgentFreezeRequest,
  AgentFreezeResponse,
  AgentThawRequest,
  AgentThawResponse,
  ErrorCode,
  FerryError,
  QuiesceRequest,
  QuiesceResponse,
  ThawRequest,
  ThawResponse,
  guestAgentSubjects,
  guestProcessorSubjects,
  type Msg,
} from "../../protocol/mod.js";
import { FreezeRegistry, type ActiveFreeze } from "./freezes.js";

/** Knobs tests turn down; the command line uses the defaults. */
export interface GuestProcessorTuning {
  /** Upper bound on waiting for an agent's freeze answer (also bounded by the freeze timeout). */
  freezeRequestTimeoutMs?: number;
  thawRequestTimeoutMs?: number;
  /** How often expired freezes are forgotten. */
  sweepIntervalMs?: number;
}

const DEFAULT_FREEZE_REQUEST_TIMEOUT_MS = 60_000;
const DEFAULT_THAW_REQUEST_TIMEOUT_MS = 30_000;
/** A freeze is forgotten this long after its deadline: the guest has thawed itself by then. */
const SWEEP_GRACE_MS = 5_000;

type AgentVerb = "freeze" | "thaw";

/** Names the VM and what failed; keeps the code so the caller's retry decision stays right. */
function agentError(vmId: string, verb: AgentVerb, err: unknown, timeoutMs: number): FerryError {
  const e = FerryError.from(err);
  // lib/rpc gives transport failures a cause; an error the agent replied has none.
  const replied = e.cause === undefined;
  if (!replied && e.code === ErrorCode.Unavailable) {
    return new FerryError(ErrorCode.Unavailable, `no guest agent answers for VM ${vmId}`, { cause: err });
  }
  if (!replied && e.code === ErrorCode.Timeout) {
    return new FerryError(ErrorCode.Timeout, `guest agent of VM ${vmId} did not answer ${verb} within ${timeoutMs} ms`, { cause: err });
  }
  return new FerryError(e.code, `guest agent of VM ${vmId} failed ${verb}: ${e.message}`, { retryable: e.retryable, cause: err });
}

/**
 * The guest processor: application-aware processing inside the guest. `quiesce` has the VM's
 * agent freeze its applications (VSS-like) just before the snapshot; `thaw` releases them and
 * says whether the freeze held (application-consistent) or expired first. Every freeze it
 * started is remembered until thawed, so draining thaws them instead of leaving guests frozen
 * until their timeout.
 */
export async function start(opts: ActorCliOptions, tuning: GuestProcessorTuning = {}): Promise<Actor> {
  const actor = await Actor.start({ role: "guest-processor", id: opts.id, natsUrl: opts.natsUrl });
  const log = actor.log;
  const freezes = new FreezeRegistry();
  const thawTimeoutMs = tuning.thawRequestTimeoutMs ?? DEFAULT_THAW_REQUEST_TIMEOUT_MS;

  const thawAgent = async (vmId: string, freezeId: string): Promise<Msg<typeof AgentThawResponse>> => {
    try {
      return await request(actor.nc, guestAgentSubjects.thaw(vmId), AgentThawRequest, { freezeId }, AgentThawResponse, {
        timeoutMs: thawTimeoutMs,
      });
    } catch (err) {
      throw agentError(vmId, "thaw", err, thawTimeoutMs);
    }
  };

  /** Thaws a freeze nobody will thaw otherwise; failures are logged, the guest thaws itself at its deadline. */
  const thawQuietly = async (freeze: Pick<ActiveFreeze, "vmId" | "freezeId">, why: string): Promise<void> => {
    try {
      const res = await thawAgent(freeze.vmId, freeze.freezeId);
      freezes.forget(freeze.freezeId);
      log.info({ vmId: freeze.vmId, freezeId: freeze.freezeId, expired: res.expired, why }, "thawed");
    } catch (err) {
      log.warn({ vmId: freeze.vmId, freezeId: freeze.freezeId, why, err: (err as Error).message }, "could not thaw; the guest thaws itself at the freeze deadline");
    }
  };

  actor.endpoint({
    name: "quiesce",
    subject: guestProcessorSubjects.quiesce(),
    request: QuiesceRequest,
    response: QuiesceResponse,
    handler: async (req) => {
      const freezeId = newId("frz");
      const sentAt = Date.now();
      // An answer after the freeze timeout would describe a freeze that already ended.
      const timeoutMs = Math.min(req.freezeTimeoutMs, tuning.freezeRequestTimeoutMs ?? DEFAULT_FREEZE_REQUEST_TIMEOUT_MS);
      let res: Msg<typeof AgentFreezeResponse>;
      try {
        res = await request(
          actor.nc,
          guestAgentSubjects.freeze(req.vmId),
          AgentFreezeRequest,
          { freezeId, timeoutMs: req.freezeTimeoutMs },
          AgentFreezeResponse,
          { timeoutMs },
        );
      } catch (err) {
        const error = agentError(req.vmId, "freeze", err, timeoutMs);
        // The agent may have frozen without our hearing it: do not leave the guest frozen.
        if (error.code === ErrorCode.Timeout) void thawQuietly({ vmId: req.vmId, freezeId }, "freeze answer timed out");
        throw error;
      }
      if (res.freezeId !== freezeId) {
        void thawQuietly({ vmId: req.vmId, freezeId: res.freezeId }, "agent answered for another freeze");
        throw new FerryError(ErrorCode.Internal, `guest agent of VM ${req.vmId} answered freeze ${res.freezeId}, asked ${freezeId}`);
      }
      const freeze: ActiveFreeze = {
        freezeId,
        vmId: req.vmId,
        sessionId: req.sessionId,
        frozenAt: res.frozenAt,
        deadline: sentAt + req.freezeTimeoutMs,
      };
      freezes.add(freeze);
      if (actor.state !== "serving") {
        // Draining started while the agent froze: the drain hook has already thawed what it knew.
        await thawQuietly(freeze, "guest processor is draining");
        throw new FerryError(ErrorCode.Unavailable, `guest processor ${actor.id} is draining; VM ${req.vmId} was thawed again`);
      }
      const failed = res.applications.filter((a) => a.state === "failed");
      log[failed.length > 0 ? "warn" : "info"](
        { sessionId: req.sessionId, vmId: req.vmId, freezeId, applications: res.applications.length, failed: failed.map((a) => a.name) },
        "quiesced",
      );
      return { vmId: req.vmId, freezeId, frozenAt: res.frozenAt, applications: res.applications };
    },
  });

  actor.endpoint({
    name: "thaw",
    subject: guestProcessorSubjects.thaw(),
    request: ThawRequest,
    response: ThawResponse,
    handler: async (req) => {
      const known = freezes.get(req.freezeId);
      if (known && known.vmId !== req.vmId) {
        throw new FerryError(ErrorCode.BadRequest, `freeze ${req.freezeId} belongs to VM ${known.vmId}, not ${req.vmId}`);
      }
      // An unknown freeze id is still passed on: after a restart of this actor the agent knows it.
      let res: Msg<typeof AgentThawResponse>;
      try {
        res = await thawAgent(req.vmId, req.freezeId);
      } catch (err) {
        if (err instanceof FerryError && err.code === ErrorCode.NotFound) freezes.forget(req.freezeId);
        throw err;
      }
      freezes.forget(req.freezeId);
      const consistent = !res.expired;
      log[consistent ? "info" : "warn"](
        { sessionId: req.sessionId, vmId: req.vmId, freezeId: req.freezeId, frozenMs: res.frozenMs, consistent },
        consistent ? "thawed" : "thawed after the freeze expired: not application-consistent",
      );
      return { vmId: req.vmId, consistent, frozenMs: res.frozenMs, applications: res.applications };
    },
  });

  const sweeper = setInterval(() => {
    for (const f of freezes.sweep(Date.now(), SWEEP_GRACE_MS)) {
      log.warn({ vmId: f.vmId, freezeId: f.freezeId, sessionId: f.sessionId }, "freeze expired without a thaw; the guest thawed itself");
    }
  }, tuning.sweepIntervalMs ?? 5_000);
  sweeper.unref();

  actor.onDrain(async () => {
    const active = freezes.active();
    if (active.length > 0) log.info({ freezes: active.length }, "thawing active freezes before stopping");
    await Promise.all(active.map((f) => thawQuietly(f, "guest processor is draining")));
  });
  actor.onStop(() => clearInterval(sweeper));

  actor.serving();
  actor.exitOnSignals();
  return actor;
}
