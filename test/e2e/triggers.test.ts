import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Consumers, JobTrigger, SessionKind, Streams, encode, msgIdFor, sessionIdFor, triggerSubjects } from "../../protocol/mod.js";
import { demoSimulatorConfig } from "../../simulators/demo.js";
import { MiB, startE2EStack, uniqueRequestId, type E2EStack } from "../harness/stack.js";

/**
 * Triggers are durable and idempotent: one published while no manager runs is processed when a
 * manager starts; the same trigger published again (same requestId and Nats-Msg-Id, or the same
 * bytes redelivered without one) never makes a second session.
 */

const JOB = "small";

describe("durable, idempotent triggers", () => {
  let e2e: E2EStack;
  let jsm: JetStreamManager;

  /** Every trigger in the stream has been handled (acknowledged or terminated) by a manager. */
  async function triggersHandled(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const info = await jsm.consumers.info(Streams.triggers, Consumers.manager);
      if (info.num_pending === 0 && info.num_ack_pending === 0) return;
      if (Date.now() > deadline) throw new Error(`triggers still pending after ${timeoutMs} ms: ${info.num_pending} pending, ${info.num_ack_pending} unacknowledged`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const sessionsOf = async (requestId: string) => (await e2e.sessions.list()).filter((s) => s.requestId === requestId);

  beforeAll(async () => {
    e2e = await startE2EStack({ name: "triggers", simulatorConfig: (dir) => demoSimulatorConfig({ dir, vms: 2, diskSizeBytes: 8 * MiB }) });
    jsm = await jetstreamManager(e2e.nc);
    await e2e.putJob({ id: JOB, hypervisor: "sim-1", repository: e2e.stack.repositoryId, vms: [{ id: "vm-2" }] });
  });

  afterAll(async () => {
    await e2e?.stop();
  });

  it("processes a trigger published while no manager runs once a manager starts", async () => {
    await e2e.stack.stopProcess("manager");
    expect(e2e.stack.process("manager").child.exitCode).toBe(0);

    const t = await e2e.triggerJob(JOB);
    expect(t.duplicate).toBe(false);
    // It waits in the stream, unconsumed, and nobody made a session for it.
    const info = await jsm.consumers.info(Streams.triggers, Consumers.manager);
    expect(info.num_pending).toBe(1);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await e2e.sessions.get(t.sessionId)).toBeUndefined();

    await e2e.stack.startProcess("manager");
    const session = await e2e.waitSession(t.sessionId);
    expect(session.result).toBe("success");
    expect(session.requestId).toBe(t.requestId);
    expect(session.vms[0]!.restorePointId).toBeDefined();
    await e2e.restorePoint(session.vms[0]!.restorePointId!);
  });

  it("makes exactly one session of a trigger published twice with the same requestId and Nats-Msg-Id", async () => {
    const requestId = uniqueRequestId("twice");
    const requestedAt = Date.now();
    const firstPublish = await e2e.triggerJob(JOB, { requestId, requestedAt });
    // A retry by a client a few seconds later: were it not dropped, its session id would differ.
    const secondPublish = await e2e.triggerJob(JOB, { requestId, requestedAt: requestedAt + 5_000 });
    expect(firstPublish.duplicate).toBe(false);
    expect(secondPublish.duplicate).toBe(true);
    expect(secondPublish.sessionId).not.toBe(firstPublish.sessionId);

    const session = await e2e.waitSession(firstPublish.sessionId);
    expect(session.result).toBe("success");
    await triggersHandled();
    expect((await sessionsOf(requestId)).map((s) => s.id)).toEqual([firstPublish.sessionId]);
  });

  it("makes no second session when the same trigger arrives again without JetStream's deduplication", async () => {
    const requestId = uniqueRequestId("redelivered");
    const requestedAt = Date.now();
    const t = await e2e.triggerJob(JOB, { requestId, requestedAt });
    const done = await e2e.waitSession(t.sessionId);
    expect(done.result).toBe("success");
    const before = await e2e.sessions.get(t.sessionId);

    // The identical trigger again, as a redelivery or a publisher outside the dedup window would send it.
    const again = encode(JobTrigger, { jobId: JOB, requestId, requestedBy: "e2e-test", requestedAt });
    const ack = await e2e.js.publish(triggerSubjects.job(JOB), again, { msgID: `${msgIdFor(SessionKind.Backup, requestId)}-again` });
    expect(ack.duplicate).toBe(false);
    await triggersHandled();

    expect(sessionIdFor(SessionKind.Backup, requestId, requestedAt)).toBe(t.sessionId);
    expect((await sessionsOf(requestId)).map((s) => s.id)).toEqual([t.sessionId]);
    const after = await e2e.sessions.get(t.sessionId);
    expect(after!.revision).toBe(before!.revision);
    expect(after!.session.result).toBe("success");

    // The manager still takes new work.
    const next = await e2e.runJob(JOB);
    expect(next.result).toBe("success");
  });
});
