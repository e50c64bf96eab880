import { jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startManager } from "../../actors/manager/main.js";
import type { Actor } from "../../lib/actor.js";
import { request } from "../../lib/rpc.js";
import type { SessionStore } from "../../lib/session-store.js";
import {
  ActiveSessionsRequest,
  ActiveSessionsResponse,
  Consumers,
  SessionEndedEvent,
  StopSessionRequest,
  StopSessionResponse,
  Streams,
  decode,
  eventSubjects,
  managerSubjects,
  sessionIdFor,
} from "../../protocol/mod.js";
import { FakePeers, HV, REPO, collect, completed, startBus, triggerJob, vm, waitForSession, type TestBus } from "./manager-fakes.js";

const MANAGER_ID = "mgr-life";

describe("manager lifecycle: abandoned sessions, concurrency, draining", () => {
  let bus: TestBus;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let peers: FakePeers;
  let sessions: SessionStore;
  let manager: Actor;
  let seq = 0;

  function trigger(jobId: string, requestId = `req-${++seq}`, requestedAt = Date.now()): Promise<string> {
    return triggerJob(js, jobId, { requestId, requestedAt });
  }

  const active = () => request(nc, managerSubjects.active(MANAGER_ID), ActiveSessionsRequest, {}, ActiveSessionsResponse).then((r) => r.sessions);

  beforeAll(async () => {
    bus = await startBus("manager-lifecycle-test");
    ({ nc, js, sessions } = bus);
    peers = new FakePeers(nc);
    peers.vms = [vm("vm-quiet", 1)];
    peers.behavior = () => "silent";
    peers.start();
    await bus.config.putJob({ job: { id: "quiet", hypervisor: HV, repository: REPO, vms: [{ id: "vm-quiet" }] }, createdAt: 1, updatedAt: 1 });
    await nc.flush();
    manager = await startManager({ id: MANAGER_ID, natsUrl: bus.url, concurrency: 1, taskSilenceMs: 60_000, drainTimeoutMs: 1_000, handleSignals: false });
  });

  afterAll(async () => {
    await manager?.stop("test done");
    peers?.stop();
    await bus?.stop();
  });

  it("closes a session abandoned by a manager that died, when its trigger comes again", async () => {
    const requestedAt = Date.now();
    const sessionId = sessionIdFor("backup", "orphan", requestedAt);
    const ended = collect(nc, eventSubjects.sessionEnded(sessionId), (data) => decode(SessionEndedEvent, data));
    await sessions.create({
      id: sessionId,
      kind: "backup",
      jobId: "quiet",
      requestId: "orphan",
      requestedBy: "test",
      requestedAt,
      owner: "mgr-dead",
      state: "running",
      createdAt: requestedAt,
      updatedAt: requestedAt,
      stats: {},
      tasks: [{ id: "t1", kind: "backup", vmId: "vm-quiet", vmName: "q", diskId: "disk0", diskLabel: "d", sizeBytes: 1, state: "running", stats: {} }],
    });
    await trigger("quiet", "orphan", requestedAt);
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.result).toBe("failed");
    expect(session.error?.message).toBe("abandoned: its manager stopped");
    expect(session.owner).toBe("mgr-dead");
    expect(session.tasks[0]!.state).toBe("failed");
    await expect.poll(() => ended.items.length).toBe(1);
    ended.stop();
    // Nothing was run again for it.
    expect(peers.started.filter((t) => t.sessionId === sessionId)).toHaveLength(0);
  });

  it("runs no more sessions at once than its concurrency, taking the next trigger when one ends", async () => {
    const first = await trigger("quiet");
    await waitForSession(sessions, first, (s) => s.tasks.some((t) => t.state === "running"));
    const second = await trigger("quiet");
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await sessions.get(second)).toBeUndefined();
    expect(await active()).toEqual([first]);

    await request(nc, managerSubjects.stop(MANAGER_ID), StopSessionRequest, { sessionId: first, reason: "make room" }, StopSessionResponse);
    const stopped = await waitForSession(sessions, first, completed);
    expect(stopped.error?.message).toBe("make room");
    await waitForSession(sessions, second, (s) => s.tasks.some((t) => t.state === "running"));
    expect(await active()).toEqual([second]);
  });

  it("on shutdown stops taking triggers and, after the drain timeout, ends running sessions cleanly", async () => {
    const [running] = await active();
    expect(running).toBeDefined();
    const stopping = manager.stop("test shutdown");
    await new Promise((r) => setTimeout(r, 100));
    const late = await trigger("quiet");
    await stopping;

    const session = await waitForSession(sessions, running!, completed);
    expect(session.result).toBe("failed");
    expect(session.error?.message).toContain("shut down");
    const task = session.tasks[0]!;
    expect(task.state).toBe("canceled");
    expect(peers.releases.filter((id) => id === task.id)).toHaveLength(1);
    const snap = peers.snapshotsCreated.find((s) => s.sessionId === running)!;
    expect(peers.snapshotsRemoved).toContain(snap.id);

    // The trigger published while draining is left for another manager.
    expect(await sessions.get(late)).toBeUndefined();
    const info = await (await jetstreamManager(nc)).consumers.info(Streams.triggers, Consumers.manager);
    expect(info.num_pending + info.num_ack_pending).toBeGreaterThanOrEqual(1);
  });
});
