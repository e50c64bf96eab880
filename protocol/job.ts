import { createHash } from "node:crypto";
import { z } from "zod";
import { EpochMs, Id } from "./common.js";
import { defineMessage } from "./codec.js";
import { subject, subjectPattern } from "./subject.js";

/**
 * Triggers and operator requests travel on `ferry.trigger.>`, captured by the FERRY_TRIGGERS
 * stream and read by managers through one durable consumer, so a trigger published while no
 * manager runs is processed when one starts. Publishers set `Nats-Msg-Id` to `msgIdFor(...)`:
 * JetStream drops a repeat of the same idempotency key within the dedup window.
 */
export const triggerSubjects = {
  /** `ferry.trigger.job.<jobId>`: run a backup job now. */
  job: (jobId: string) => subject("trigger", "job", jobId),
  /** `ferry.trigger.restore`: restore disks of a restore point. */
  restore: () => subject("trigger", "restore"),
  /** `ferry.trigger.verify`: re-read a restore point and check every digest. */
  verify: () => subject("trigger", "verify"),
  /** `ferry.trigger.>` */
  all: () => subjectPattern("trigger", ">"),
} as const;

/** Who or what asked, free text for the report (user@host, "cron", "ci-pipeline"). */
const RequestedBy = z.string().min(1).max(200);

/** An idempotency key chosen by the publisher. */
export const RequestId = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, "must be 1-128 of [A-Za-z0-9_.:-]");

export const JobTrigger = defineMessage("trigger.job", {
  jobId: Id,
  requestId: RequestId,
  requestedBy: RequestedBy,
  requestedAt: EpochMs,
  reason: z.string().max(500).optional(),
});

export const RestoreTarget = z.discriminatedUnion("kind", [
  /** Each disk to a raw image file on the proxy's host. */
  z.object({
    kind: z.literal("files"),
    disks: z.array(z.object({ diskId: Id, path: z.string().min(1) })).min(1),
    overwrite: z.boolean().default(false),
  }),
  /** The whole VM, as a new VM on the hypervisor. */
  z.object({
    kind: z.literal("vm"),
    hypervisorId: Id,
    name: z.string().min(1).max(200),
    hostId: Id.optional(),
    datastoreId: Id.optional(),
  }),
]);
export type RestoreTarget = z.infer<typeof RestoreTarget>;

export const RestoreRequest = defineMessage("trigger.restore", {
  requestId: RequestId,
  requestedBy: RequestedBy,
  requestedAt: EpochMs,
  repositoryId: Id,
  restorePointId: Id,
  target: RestoreTarget,
  /** Run on these proxies only; empty means any. */
  proxies: z.array(Id).default([]),
});

export const VerifyRequest = defineMessage("trigger.verify", {
  requestId: RequestId,
  requestedBy: RequestedBy,
  requestedAt: EpochMs,
  repositoryId: Id,
  restorePointId: Id,
});

export const SessionKind = { Backup: "backup", Restore: "restore", Verify: "verify" } as const;
export type SessionKind = (typeof SessionKind)[keyof typeof SessionKind];

/** The JetStream message id that makes a trigger idempotent. */
export function msgIdFor(kind: SessionKind, requestId: string): string {
  return `${kind}:${requestId}`;
}

/**
 * A session's id follows from its trigger, so a redelivered trigger finds its session instead of
 * starting a second one, and the publisher knows the id before the manager answers.
 * Form: `<kind>-<yyyymmdd>-<hhmmss>-<12 hex>`, sortable by request time.
 */
export function sessionIdFor(kind: SessionKind, requestId: string, requestedAt: number): string {
  const iso = new Date(requestedAt).toISOString(); // 2026-11-26T12:46:56.123Z
  const stamp = `${iso.slice(0, 10).replaceAll("-", "")}-${iso.slice(11, 19).replaceAll(":", "")}`;
  const hash = createHash("sha256").update(`${kind}\0${requestId}`).digest("hex").slice(0, 12);
  return `${kind}-${stamp}-${hash}`;
}
