import { z } from "zod";
import { EpochMs, Id } from "./common.js";
import { defineMessage } from "./codec.js";
import { subject } from "./subject.js";

/**
 * Two layers: the guest-processor actor's service (`ferry.svc.guest.<verb>`, called by managers)
 * and the in-guest agent API (`ferry.agent.<vmId>.<verb>`, called only by guest processors; the
 * simulator's guest OS serves it, as a deployed in-guest component would).
 */
export const guestProcessorSubjects = {
  /** `ferry.svc.guest.quiesce` */
  quiesce: () => subject("svc", "guest", "quiesce"),
  /** `ferry.svc.guest.thaw` */
  thaw: () => subject("svc", "guest", "thaw"),
} as const;

export const guestAgentSubjects = {
  /** `ferry.agent.<vmId>.info` */
  info: (vmId: string) => subject("agent", vmId, "info"),
  /** `ferry.agent.<vmId>.freeze` */
  freeze: (vmId: string) => subject("agent", vmId, "freeze"),
  /** `ferry.agent.<vmId>.thaw` */
  thaw: (vmId: string) => subject("agent", vmId, "thaw"),
} as const;

export const ApplicationState = z.object({
  name: z.string(),
  kind: z.string(),
  state: z.enum(["running", "frozen", "failed"]),
  message: z.string().optional(),
});

// --- guest-processor service ---

export const QuiesceRequest = defineMessage("guest.quiesce.req", {
  sessionId: Id,
  vmId: Id,
  /** The applications must be thawed within this time or the guest thaws them itself. */
  freezeTimeoutMs: z.number().int().min(1000).max(600_000),
});
export const QuiesceResponse = defineMessage("guest.quiesce.res", {
  vmId: Id,
  /** Identifies this freeze; thaw must name it. */
  freezeId: Id,
  frozenAt: EpochMs,
  applications: z.array(ApplicationState),
});

export const ThawRequest = defineMessage("guest.thaw.req", { sessionId: Id, vmId: Id, freezeId: Id });
export const ThawResponse = defineMessage("guest.thaw.res", {
  vmId: Id,
  /** False when the freeze expired before the thaw: the snapshot is not application-consistent. */
  consistent: z.boolean(),
  frozenMs: z.number().int().nonnegative(),
  applications: z.array(ApplicationState),
});

// --- in-guest agent ---

export const AgentInfoRequest = defineMessage("agent.info.req", {});
export const AgentInfoResponse = defineMessage("agent.info.res", {
  vmId: Id,
  os: z.string(),
  applications: z.array(ApplicationState),
});

export const AgentFreezeRequest = defineMessage("agent.freeze.req", { freezeId: Id, timeoutMs: z.number().int().positive() });
export const AgentFreezeResponse = defineMessage("agent.freeze.res", {
  freezeId: Id,
  frozenAt: EpochMs,
  applications: z.array(ApplicationState),
});

export const AgentThawRequest = defineMessage("agent.thaw.req", { freezeId: Id });
export const AgentThawResponse = defineMessage("agent.thaw.res", {
  freezeId: Id,
  /** The freeze had already expired and the guest thawed itself. */
  expired: z.boolean(),
  frozenMs: z.number().int().nonnegative(),
  applications: z.array(ApplicationState),
});
