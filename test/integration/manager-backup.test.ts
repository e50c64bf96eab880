import type { JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startManager } from "../../actors/manager/main.js";
import type { Actor } from "../../lib/actor.js";
import type { ConfigStore } from "../../lib/config-store.js";
import { request } from "../../lib/rpc.js";
import type { SessionStore } from "../../lib/session-store.js";
import {
  ActiveSessionsRequest,
  ActiveSessionsResponse,
  ErrorCode,
  FerryError,
  JobTrigger,
  SessionEndedEvent,
  SessionLogEvent,
  StopSessionRequest,
  StopSessionResponse,
  TriggerRejectedEvent,
  decode,
  decodeReply,
  encode,
  eventSubjects,
  managerSubjects,
  sessionIdFor,
  subjectPattern,
  triggerSubjects,
  type JobSpecInput,
} from "../../protocol/mod.js";
import {
  FakePeers,
  HV,
  REPO,
  collect,
  completed,
  vm,
  startBus,
  triggerJob,
  waitForSession,
  waitForTriggersSettled,
  type TaskBehavior,
  type TestBus,
} from "./manager-fakes.js";

const MANAGER_ID = "mgr-test";
const SILENCE_MS = 3_000;

describe("manager backup sessions against fake peers", () => {
  let bus: TestBus;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let peers: FakePeers;
  let config: ConfigStore;
  let sessions: SessionStore;
  let manager: Actor;
  let ended: ReturnType<typeof collect<{ sessionId: string; result: string }>>;
  let rejected: ReturnType<typeof collect<ReturnType<typeof decode<typeof TriggerRejectedEvent>>>>;
  let seq = 0;
  const earlyRequest = "early-1";
  const earlyAt = Date.now();

  async function putJob(job: Omit<JobSpecInput, "hypervisor" | "repository"> & Partial<JobSpecInput>): Promise<void> {
    await config.putJob({ job: { hypervisor: HV, repository: REPO, ...job }, createdAt: Date.now(), updatedAt: Date.now() });
  }

  function trigger(jobId: string, opts: { requestId?: string; requestedAt?: number; msgId?: boolean } = {}): Promise<string> {
    return triggerJob(js, jobId, { ...opts, requestId: opts.requestId ?? `req-${++seq}` });
  }

  beforeAll(async () => {
    bus = await startBus("manager-test");
    ({ nc, js, config, sessions } = bus);
    peers = new FakePeers(nc);
    peers.vms = [
      vm("vm-a", 2),
      vm("vm-b", 1, { tags: ["web"] }),
      vm("vm-bad", 2),
      vm("vm-quiet", 1),
      vm("vm-app", 1, { guestAgent: true }),
      vm("vm-spoofed", 1),
      vm("vm-haunted", 1),
    ];
    const behaviors: Array<[string, TaskBehavior]> = [
      ["vm-bad-disk1-", "fail"],
      ["vm-quiet", "silent"],
      ["vm-spoofed", "impostor"],
      ["vm-haunted", "impostor-only"],
    ];
    peers.behavior = (task) => behaviors.find(([prefix]) => task.taskId.startsWith(prefix))?.[1] ?? "succeed";
    peers.start();
    ended = collect(nc, subjectPattern("evt", "mgr", "*", "ended"), (data) => decode(SessionEndedEvent, data));
    rejected = collect(nc, managerSubjects.triggerRejected(), (data) => decode(TriggerRejectedEvent, data));
    await nc.flush();
    await putJob({ id: "nightly", name: "Nightly", vms: [{ id: "vm-a" }, { tag: "web" }, { name: "no-such-vm" }], blockSize: 1024 * 1024 });
    await putJob({ id: "clean", vms: [{ id: "vm-a" }] });
    await putJob({ id: "broken", vms: [{ id: "vm-bad" }] });
    await putJob({ id: "quiet", vms: [{ id: "vm-quiet" }] });
    await putJob({ id: "spoofed", vms: [{ id: "vm-spoofed" }] });
    await putJob({ id: "haunted", vms: [{ id: "vm-haunted" }] });
    await putJob({ id: "app", vms: [{ id: "vm-app" }], guestProcessing: { enabled: true, onFailure: "warn" } });
    // Published while no manager runs: the durable consumer keeps it.
    await trigger("clean", { requestId: earlyRequest, requestedAt: earlyAt });
    manager = await startManager({ id: MANAGER_ID, natsUrl: bus.url, concurrency: 2, taskSilenceMs: SILENCE_MS, handleSignals: false, drainTimeoutMs: 2_000 });
  });

  afterAll(async () => {
    await manager?.stop("test done");
    ended?.stop();
    rejected?.stop();
    peers?.stop();
    await bus?.stop();
  });

  it("processes a trigger published before the manager started", async () => {
    const session = await waitForSession(sessions, sessionIdFor("backup", earlyRequest, earlyAt), completed);
    expect(session.result).toBe("success");
    expect(session.owner).toBe(MANAGER_ID);
  });

  it("runs a triggered job to a completed session with per-task stats and a restore point per VM", async () => {
    const sessionId = await trigger("nightly");
    const session = await waitForSession(sessions, sessionId, completed);

    // The selector that matched nothing is a warning; both VMs got restore points.
    expect(session.result).toBe("warning");
    expect(session.warnings.join(" ")).toContain("no-such-vm");
    expect(session.jobName).toBe("Nightly");
    expect(session.vms.map((v) => [v.vmId, v.state])).toEqual([
      ["vm-a", "succeeded"],
      ["vm-b", "succeeded"],
    ]);
    for (const v of session.vms) {
      expect(v.restorePointId).toMatch(/^rp-/);
      expect(v.repositoryId).toBe(REPO);
      expect(v.consistency).toBe("crash");
    }
    expect(session.tasks.map((t) => `${t.vmId}/${t.diskId}`).sort()).toEqual(["vm-a/disk0", "vm-a/disk1", "vm-b/disk0"]);
    for (const task of session.tasks) {
      expect(task.state).toBe("succeeded");
      expect(task.proxyId).toBe("proxy1");
      expect(task.targetMoverId).toBe("tgt1");
      expect(task.stats.processedBytes).toBe(task.sizeBytes);
      expect(task.stats.storedBytes).toBe(Math.floor(task.sizeBytes / 2));
    }
    const total = session.tasks.reduce((s, t) => s + t.sizeBytes, 0);
    expect(session.totalBytes).toBe(total);
    expect(session.stats.processedBytes).toBe(total);
    expect(session.stats.compressionRatio).toBeCloseTo(2, 2);
    expect(session.stats.durationMs).toBeGreaterThan(0);
    expect(session.endedAt).toBeGreaterThanOrEqual(session.startedAt!);

    // Every disk's manifest went into its VM's commit; snapshots removed; slots released once each.
    const commits = peers.commits.filter((c) => c.restorePoint.sessionId === sessionId);
    expect(commits.map((c) => [c.restorePoint.vm.id, c.disks.map((d) => d.manifestDigest)]).sort()).toEqual([
      ["vm-a", ["m-disk0", "m-disk1"]],
      ["vm-b", ["m-disk0"]],
    ]);
    const snaps = peers.snapshotsCreated.filter((s) => s.sessionId === sessionId);
    expect(snaps).toHaveLength(2);
    expect(peers.snapshotsRemoved).toEqual(expect.arrayContaining(snaps.map((s) => s.id)));
    expect(session.tasks.map((t) => countOf(peers.releases, t.id))).toEqual([1, 1, 1]);

    // One `ended` event, and a readable log on the session's log subject.
    await expect.poll(() => ended.items.filter((e) => e.sessionId === sessionId).length).toBe(1);
    expect(ended.items.find((e) => e.sessionId === sessionId)?.result).toBe("warning");
    const log = await readSessionLog(js, sessionId);
    expect(log.some((line) => line.includes("restore point"))).toBe(true);
  });

  it("starts one session for a trigger delivered twice with the same request id", async () => {
    const requestedAt = Date.now();
    const sessionId = await trigger("clean", { requestId: "twice", requestedAt, msgId: false });
    await trigger("clean", { requestId: "twice", requestedAt, msgId: false });
    await waitForSession(sessions, sessionId, completed);
    await waitForTriggersSettled(nc);
    const all = (await sessions.list()).filter((s) => s.requestId === "twice");
    expect(all).toHaveLength(1);
    expect(peers.started.filter((t) => t.sessionId === sessionId)).toHaveLength(2);
    expect(ended.items.filter((e) => e.sessionId === sessionId)).toHaveLength(1);
  });

  it("fails a VM whose disk task failed, still removing its snapshot and releasing every slot", async () => {
    const sessionId = await trigger("broken");
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.result).toBe("failed");
    const vmRecord = session.vms[0]!;
    expect(vmRecord.state).toBe("failed");
    expect(vmRecord.restorePointId).toBeUndefined();
    expect(vmRecord.error?.message).toContain("read error");
    const failed = session.tasks.find((t) => t.diskId === "disk1")!;
    const fine = session.tasks.find((t) => t.diskId === "disk0")!;
    expect(failed.state).toBe("failed");
    expect(failed.error).toMatchObject({ code: ErrorCode.Io });
    expect(fine.state).toBe("succeeded");

    const snap = peers.snapshotsCreated.find((s) => s.sessionId === sessionId)!;
    expect(peers.snapshotsRemoved).toContain(snap.id);
    expect(peers.commits.some((c) => c.restorePoint.sessionId === sessionId)).toBe(false);
    expect(countOf(peers.releases, fine.id)).toBe(1);
    expect(countOf(peers.releases, failed.id)).toBe(1);
  });

  it("fails a session whose job does not exist, saying so", async () => {
    const sessionId = await trigger("ghost");
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.result).toBe("failed");
    expect(session.error).toMatchObject({ code: ErrorCode.NotFound });
    expect(session.error?.message).toContain("job ghost not found");
  });

  it("rejects a malformed trigger with an event and goes on with the next one", async () => {
    await js.publish(triggerSubjects.job("clean"), Buffer.from("this is not msgpack of a trigger"));
    await js.publish(triggerSubjects.job("clean"), encode(JobTrigger, { jobId: "other", requestId: "x", requestedBy: "t", requestedAt: 1 }));
    const sessionId = await trigger("clean");
    await expect.poll(() => rejected.items.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    expect(rejected.items[0]!.error.code).toBe(ErrorCode.BadRequest);
    expect(rejected.items[0]!.subject).toBe(triggerSubjects.job("clean"));
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.result).toBe("success");
  });

  it("takes application-consistent snapshots of VMs with guest agents: quiesce, snapshot, thaw", async () => {
    const sessionId = await trigger("app");
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.result).toBe("success");
    expect(session.vms[0]!.consistency).toBe("application");
    expect(peers.calls.filter((c) => c.endsWith("vm-app"))).toEqual(["quiesce vm-app", "snapshot vm-app", "thaw vm-app"]);
    expect(peers.commits.find((c) => c.restorePoint.sessionId === sessionId)?.restorePoint.consistency).toBe("application");
  });

  it("falls back to crash-consistent with a warning when the guest cannot be quiesced", async () => {
    peers.quiesce = "fail";
    try {
      const sessionId = await trigger("app");
      const session = await waitForSession(sessions, sessionId, completed);
      expect(session.result).toBe("warning");
      expect(session.vms[0]!.consistency).toBe("crash");
      expect(session.vms[0]!.warnings.join(" ")).toContain("quiesce failed");
      expect(session.vms[0]!.restorePointId).toBeDefined();
      expect(peers.snapshotsCreated.find((s) => s.sessionId === sessionId)?.quiesced).toBe(false);
    } finally {
      peers.quiesce = "ok";
    }
  });

  it("stops a running session on request: tasks canceled on the movers, snapshot removed, result failed", async () => {
    const sessionId = await trigger("quiet");
    await waitForSession(sessions, sessionId, (s) => s.tasks.some((t) => t.state === "running"));
    const res = await request(nc, managerSubjects.stop(MANAGER_ID), StopSessionRequest, { sessionId }, StopSessionResponse);
    expect(res).toMatchObject({ sessionId, stopping: true });
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.result).toBe("failed");
    expect(session.error?.message).toBe("stopped by operator");
    const task = session.tasks[0]!;
    expect(task.state).toBe("canceled");
    expect(peers.cancels.filter((c) => c.taskId === task.id).map((c) => c.role).sort()).toEqual(["src", "tgt"]);
    const snap = peers.snapshotsCreated.find((s) => s.sessionId === sessionId)!;
    expect(peers.snapshotsRemoved).toContain(snap.id);
    expect(countOf(peers.releases, task.id)).toBe(1);
  });

  it("fails a task whose movers stay silent", async () => {
    const sessionId = await trigger("quiet");
    const session = await waitForSession(sessions, sessionId, completed, SILENCE_MS + 15_000);
    const task = session.tasks[0]!;
    expect(session.result).toBe("failed");
    expect(task.state).toBe("failed");
    expect(task.error?.message).toContain("mover silent");
    expect(countOf(peers.releases, task.id)).toBe(1);
    expect(peers.cancels.filter((c) => c.taskId === task.id)).toHaveLength(2);
  });

  it("ignores a task event from a mover not assigned to the task", async () => {
    const sessionId = await trigger("spoofed");
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.result).toBe("success");
    const task = session.tasks[0]!;
    expect(task.state).toBe("succeeded");
    expect(task.error).toBeUndefined();
    expect(peers.cancels.filter((c) => c.taskId === task.id)).toHaveLength(0);
  });

  it("does not count reports of a foreign mover as signs of life of the task's movers", async () => {
    const sessionId = await trigger("haunted");
    const session = await waitForSession(sessions, sessionId, completed, SILENCE_MS + 5_000);
    const task = session.tasks[0]!;
    expect(task.state).toBe("failed");
    expect(task.error?.message).toContain("mover silent");
    expect(task.stats.processedBytes).toBe(0);
    expect(countOf(peers.releases, task.id)).toBe(1);
  });

  it("answers a malformed stop request with an error, and an unknown session with not_found", async () => {
    const reply = await nc.request(managerSubjects.stop(MANAGER_ID), Buffer.from("garbage"), { timeout: 5_000 });
    expect(() => decodeReply(StopSessionResponse, reply.data)).toThrow(FerryError);
    try {
      decodeReply(StopSessionResponse, reply.data);
    } catch (err) {
      expect((err as FerryError).code).toBe(ErrorCode.BadRequest);
    }
    await expect(request(nc, managerSubjects.stop(MANAGER_ID), StopSessionRequest, { sessionId: "backup-nope" }, StopSessionResponse)).rejects.toMatchObject({
      code: ErrorCode.NotFound,
    });
    const active = await request(nc, managerSubjects.active(MANAGER_ID), ActiveSessionsRequest, {}, ActiveSessionsResponse);
    expect(active.managerId).toBe(MANAGER_ID);
  });
});

function countOf(items: readonly string[], value: string): number {
  return items.filter((x) => x === value).length;
}

async function readSessionLog(js: JetStreamClient, sessionId: string): Promise<string[]> {
  const consumer = await js.consumers.get("FERRY_EVENTS", { filter_subjects: eventSubjects.sessionLog(sessionId) });
  const lines: string[] = [];
  for (;;) {
    const msg = await consumer.next({ expires: 1_000 });
    if (!msg) break;
    lines.push(decode(SessionLogEvent, msg.data).message);
  }
  return lines;
}
