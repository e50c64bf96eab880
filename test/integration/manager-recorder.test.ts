import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionRecorder } from "../../actors/manager/session-recorder.js";
import { openBucket } from "../../lib/jetstream-setup.js";
import { createLogger } from "../../lib/log.js";
import { SessionStore, type Session, type StoredSession } from "../../lib/session-store.js";
import { Buckets, ErrorCode, FerryError, SessionEndedEvent, decode, eventSubjects, emptyTaskStats } from "../../protocol/mod.js";
import { collect, startBus, type TestBus } from "./manager-fakes.js";

const log = createLogger("manager-recorder-test");

/** A restore session whose one task succeeded: completing it gives `success`. */
async function createRunningSession(sessions: SessionStore, id: string): Promise<StoredSession> {
  const now = Date.now();
  return sessions.create({
    id,
    kind: "restore",
    requestId: id,
    requestedBy: "test",
    requestedAt: now,
    owner: "mgr-a",
    state: "running",
    createdAt: now,
    updatedAt: now,
    stats: {},
    tasks: [
      { id: "t1", kind: "restore", vmId: "vm-1", vmName: "vm", diskId: "disk0", diskLabel: "d", sizeBytes: 1, state: "succeeded", stats: emptyTaskStats() },
    ],
  });
}

/** What a manager closing an abandoned session writes (manager.ts, settleExisting). */
function closeAsAbandoned(session: Session): void {
  session.state = "completed";
  session.result = "failed";
  session.endedAt = Date.now();
  session.error = { code: ErrorCode.Unavailable, message: "abandoned: its manager stopped", retryable: false };
}

describe("the session recorder's completion", () => {
  let bus: TestBus;
  let nc: NatsConnection;
  let sessions: SessionStore;

  beforeAll(async () => {
    bus = await startBus("manager-recorder-test");
    ({ nc, sessions } = bus);
  });

  afterAll(async () => {
    await bus?.stop();
  });

  it("does not overwrite a record another manager completed meanwhile, nor announce a second end", async () => {
    const id = "restore-20260101-000000-aaaaaaaaaaa1";
    const stored = await createRunningSession(sessions, id);
    const ended = collect(nc, eventSubjects.sessionEnded(id), (data) => decode(SessionEndedEvent, data));
    const recorder = new SessionRecorder(stored.session, sessions, bus.js, log);

    await sessions.update(id, closeAsAbandoned);
    await recorder.complete();

    const after = (await sessions.get(id))!.session;
    expect(after.result).toBe("failed");
    expect(after.error?.message).toBe("abandoned: its manager stopped");
    await nc.flush();
    await new Promise((r) => setTimeout(r, 200));
    expect(ended.items).toHaveLength(0);
    ended.stop();
  });

  it("still completes when its own completed record was stored though the write was reported failed", async () => {
    const id = "restore-20260101-000000-aaaaaaaaaaa2";
    const stored = await createRunningSession(sessions, id);
    const ended = collect(nc, eventSubjects.sessionEnded(id), (data) => decode(SessionEndedEvent, data));
    // The first completed write lands, but its acknowledgement is lost.
    class LossyStore extends SessionStore {
      lost = false;
      override async update(sessionId: string, mutate: (session: Session) => void): Promise<StoredSession> {
        const result = await super.update(sessionId, mutate);
        if (!this.lost && result.session.state === "completed") {
          this.lost = true;
          throw new FerryError(ErrorCode.Timeout, "no reply from the KV within 5000 ms");
        }
        return result;
      }
    }
    const lossy = new LossyStore(await openBucket(nc, Buckets.sessions));
    const recorder = new SessionRecorder(stored.session, lossy, bus.js, log);

    await recorder.complete();

    expect(lossy.lost).toBe(true);
    const after = (await sessions.get(id))!.session;
    expect(after.state).toBe("completed");
    expect(after.result).toBe("success");
    await expect.poll(() => ended.items.map((e) => e.result)).toEqual(["success"]);
    ended.stop();
  });
});
