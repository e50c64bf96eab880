import { jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startManager } from "../../actors/manager/main.js";
import type { Actor } from "../../lib/actor.js";
import type { SessionStore } from "../../lib/session-store.js";
import {
  ErrorCode,
  RestoreRequest,
  Streams,
  VerifyRequest,
  encode,
  msgIdFor,
  sessionIdFor,
  triggerSubjects,
  type RestorePoint,
  type RestoreTarget,
} from "../../protocol/mod.js";
import { FakePeers, HV, MiB, REPO, completed, startBus, waitForSession, type TestBus } from "./manager-fakes.js";

function restorePoint(id: string, disks: number): RestorePoint {
  return {
    id,
    repositoryId: REPO,
    jobId: "nightly",
    jobName: "Nightly",
    sessionId: "backup-20260101-000000-aaaaaaaaaaaa",
    vm: { id: "vm-a", name: "app-server", hypervisorId: HV, hostId: "host1", guestOs: "linux", tags: ["prod"] },
    createdAt: Date.now() - 60_000,
    committedAt: Date.now() - 50_000,
    consistency: "crash",
    disks: Array.from({ length: disks }, (_, i) => ({
      diskId: `disk${i}`,
      label: `Hard disk ${i + 1}`,
      sizeBytes: (i + 1) * 4 * MiB,
      blockSize: MiB,
      blocks: (i + 1) * 4,
      zeroBlocks: 1,
      manifestDigest: `m${i}`,
    })),
    warnings: [],
  };
}

describe("manager restore and verify sessions against fake peers", () => {
  let bus: TestBus;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let peers: FakePeers;
  let sessions: SessionStore;
  let manager: Actor;
  let seq = 0;

  async function restore(restorePointId: string, target: RestoreTarget): Promise<string> {
    const requestId = `restore-${++seq}`;
    const requestedAt = Date.now();
    await js.publish(
      triggerSubjects.restore(),
      encode(RestoreRequest, { requestId, requestedBy: "test", requestedAt, repositoryId: REPO, restorePointId, target, proxies: [] }),
      { msgID: msgIdFor("restore", requestId) },
    );
    return sessionIdFor("restore", requestId, requestedAt);
  }

  async function verify(restorePointId: string): Promise<string> {
    const requestId = `verify-${++seq}`;
    const requestedAt = Date.now();
    await js.publish(triggerSubjects.verify(), encode(VerifyRequest, { requestId, requestedBy: "test", requestedAt, repositoryId: REPO, restorePointId }), {
      msgID: msgIdFor("verify", requestId),
    });
    return sessionIdFor("verify", requestId, requestedAt);
  }

  beforeAll(async () => {
    bus = await startBus("manager-restore-test");
    ({ nc, js, sessions } = bus);
    peers = new FakePeers(nc);
    peers.restorePoints.set("rp-two", restorePoint("rp-two", 2));
    peers.restorePoints.set("rp-bad", restorePoint("rp-bad", 2));
    peers.corruptBlocks = (task) => (task.restorePointId === "rp-bad" && task.diskId === "disk1" ? 3 : 0);
    peers.start();
    await nc.flush();
    manager = await startManager({ id: "mgr-restore", natsUrl: bus.url, taskSilenceMs: 5_000, handleSignals: false });
  });

  afterAll(async () => {
    await manager?.stop("test done");
    peers?.stop();
    await bus?.stop();
  });

  it("restores the listed disks to files, recording where each went", async () => {
    const sessionId = await restore("rp-two", { kind: "files", disks: [{ diskId: "disk1", path: "/restore/d1.img" }], overwrite: false });
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.kind).toBe("restore");
    expect(session.result).toBe("success");
    expect(session.tasks).toHaveLength(1);
    const task = session.tasks[0]!;
    expect(task).toMatchObject({ kind: "restore", diskId: "disk1", state: "succeeded", outputPath: "/restore/d1.img", sizeBytes: 8 * MiB });
    expect(task.stats.processedBytes).toBe(8 * MiB);
    expect(session.totalBytes).toBe(8 * MiB);
    expect(peers.assigns.find((a) => a.taskId === task.id)).toMatchObject({ needsProxy: true, repositoryId: REPO });
    expect(peers.releases.filter((id) => id === task.id)).toHaveLength(1);
  });

  it("restores a whole VM as a new VM created with the restore point's disks", async () => {
    const sessionId = await restore("rp-two", { kind: "vm", hypervisorId: HV, name: "app-server-restored" });
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.result).toBe("success");
    const created = peers.vmsCreated.at(-1)!;
    expect(created.name).toBe("app-server-restored");
    expect(created.disks).toEqual([
      { label: "Hard disk 1", sizeBytes: 4 * MiB },
      { label: "Hard disk 2", sizeBytes: 8 * MiB },
    ]);
    const newVmId = `vm-new-${peers.vmsCreated.length}`;
    expect(session.vms[0]).toMatchObject({ vmId: newVmId, state: "succeeded" });
    expect(session.tasks.map((t) => t.outputPath).sort()).toEqual([`/fake/${newVmId}/disk0`, `/fake/${newVmId}/disk1`]);
  });

  it("fails a restore of a disk the restore point does not have, naming it", async () => {
    const sessionId = await restore("rp-two", { kind: "files", disks: [{ diskId: "disk9", path: "/restore/x.img" }], overwrite: false });
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.result).toBe("failed");
    expect(session.error?.message).toContain("disk9");
  });

  it("fails a restore of an unknown restore point", async () => {
    const sessionId = await restore("rp-missing", { kind: "files", disks: [{ diskId: "disk0", path: "/restore/x.img" }], overwrite: false });
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.result).toBe("failed");
    expect(session.error).toMatchObject({ code: ErrorCode.NotFound });
  });

  it("verifies every disk of a restore point on the repository alone", async () => {
    const sessionId = await verify("rp-two");
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.kind).toBe("verify");
    expect(session.result).toBe("success");
    expect(session.tasks.map((t) => [t.diskId, t.state])).toEqual([
      ["disk0", "succeeded"],
      ["disk1", "succeeded"],
    ]);
    for (const task of session.tasks) {
      expect(peers.assigns.find((a) => a.taskId === task.id)?.needsProxy).toBe(false);
    }
  });

  it("fails a verify that found corrupt blocks", async () => {
    const sessionId = await verify("rp-bad");
    const session = await waitForSession(sessions, sessionId, completed);
    expect(session.result).toBe("failed");
    const bad = session.tasks.find((t) => t.diskId === "disk1")!;
    expect(bad.state).toBe("failed");
    expect(bad.error).toMatchObject({ code: ErrorCode.Corrupt });
    expect(bad.error?.message).toContain("3 of 8 blocks corrupt");
    expect(session.tasks.find((t) => t.diskId === "disk0")?.state).toBe("succeeded");
  });

  it("leaves no event consumers behind once its sessions ended", async () => {
    const info = await (await jetstreamManager(nc)).streams.info(Streams.events);
    expect(info.state.consumer_count).toBe(0);
  });
});
