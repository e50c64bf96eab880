import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../../lib/actor.js";
import { connectNats } from "../../lib/nats.js";
import { request } from "../../lib/rpc.js";
import {
  BackupOpenRequest,
  BackupStartRequest,
  ChannelOpened,
  CommitRestorePointRequest,
  CommitRestorePointResponse,
  BlockDigestsRequest,
  BlockDigestsResponse,
  RepositoryInfoRequest,
  RepositoryInfoResponse,
  RestoreOpenRequest,
  RestoreStartRequest,
  TaskAccepted,
  TaskCancelRequest,
  TaskCancelResponse,
  TaskDoneEvent,
  TaskFailedEvent,
  VerifyStartRequest,
  decode,
  eventSubjects,
  repositorySubjects,
  sourceMoverSubjects,
  targetMoverSubjects,
  type Msg,
} from "../../protocol/mod.js";
import { start as startSourceMover } from "../../actors/source-mover/main.js";
import { start as startTargetMover } from "../../actors/target-mover/main.js";
import { startTestNats } from "../harness/nats.js";

const MiB = 1024 * 1024;

/** A disk image with zero, text-like and random 1 MiB blocks, plus a partial last block. */
function makeImage(path: string, blocks: number, tail = 123_457): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < blocks; i++) {
    if (i % 3 === 0) parts.push(Buffer.alloc(MiB));
    else if (i % 3 === 1) parts.push(Buffer.from(`block ${i} `.repeat(MiB / 8).slice(0, MiB)));
    else parts.push(randomBytes(MiB));
  }
  parts.push(randomBytes(tail));
  const image = Buffer.concat(parts);
  writeFileSync(path, image);
  return image;
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

describe("source and target movers over a data channel", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let nc: NatsConnection;
  let dir: string;
  const actors: Actor[] = [];

  beforeAll(async () => {
    // A small max_payload forces 1 MiB blocks to be split into frames.
    nats = await startTestNats({ maxPayloadBytes: 256 * 1024 });
    dir = mkdtempSync(join(tmpdir(), "ferry-movers-"));
    actors.push(await startTargetMover({ id: "tgt-1", natsUrl: nats.url, repository: "repo-t", path: join(dir, "repo") }));
    actors.push(await startSourceMover({ id: "src-1", natsUrl: nats.url, slots: 2 }));
    nc = await connectNats({ servers: nats.url, name: "test" });
  });

  afterAll(async () => {
    for (const actor of actors) await actor.stop();
    await nc?.close();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function waitTaskEnd(sub: Subscription): Promise<Msg<typeof TaskDoneEvent>> {
    for await (const msg of sub) {
      if (msg.subject.endsWith(".done")) return decode(TaskDoneEvent, msg.data);
      if (msg.subject.endsWith(".failed")) throw new Error(`task failed: ${decode(TaskFailedEvent, msg.data).error.message}`);
    }
    throw new Error("subscription closed");
  }

  async function backupDisk(sessionId: string, restorePointId: string, diskId: string, path: string, sizeBytes: number) {
    const sub = nc.subscribe(eventSubjects.task("tgt", sessionId, diskId, "done").replace(/\.done$/, ".*"));
    const srcFailed = nc.subscribe(eventSubjects.task("src", sessionId, diskId, "failed"));
    const opened = await request(nc, targetMoverSubjects.backupOpen("tgt-1"), BackupOpenRequest, {
      sessionId, taskId: diskId, attempt: 0, jobId: "job-1", restorePointId, vmId: "vm-1", diskId, diskLabel: diskId, sizeBytes, blockSize: MiB,
    }, ChannelOpened);
    await request(nc, sourceMoverSubjects.backupStart("src-1"), BackupStartRequest, {
      sessionId, taskId: diskId, attempt: 0, restorePointId, diskId, source: { mode: "file", path }, sizeBytes, blockSize: MiB,
      compression: "snappy", channel: opened.channel,
    }, TaskAccepted);
    const done = await waitTaskEnd(sub);
    sub.unsubscribe();
    srcFailed.unsubscribe();
    return done;
  }

  it("backs up a disk with split frames, skips zero blocks, and restores it byte-identical", async () => {
    const image = makeImage(join(dir, "disk-a.raw"), 9);
    const done = await backupDisk("s-1", "rp-1", "disk-a", join(dir, "disk-a.raw"), image.length);
    expect(done.outcome.kind).toBe("backup");
    expect(done.stats.zeroBlocksSkipped).toBe(3);
    expect(done.stats.blocks).toBe(7);
    expect(done.stats.processedBytes).toBe(image.length);
    expect(done.stats.transferredBytes).toBeLessThan(done.stats.dataBytes);
    if (done.outcome.kind !== "backup") throw new Error("unexpected outcome");

    const committed = await request(nc, repositorySubjects.commit("repo-t"), CommitRestorePointRequest, {
      restorePoint: {
        id: "rp-1", jobId: "job-1", jobName: "job one", sessionId: "s-1",
        vm: { id: "vm-1", name: "vm one", hypervisorId: "hv", hostId: "h1", guestOs: "linux", tags: [] },
        createdAt: Date.now(), consistency: "crash", warnings: [],
      },
      disks: [{ diskId: "disk-a", manifestDigest: done.outcome.manifestDigest }],
    }, CommitRestorePointResponse);
    expect(committed.restorePoint.disks[0]?.zeroBlocks).toBe(3);

    const digests = await request(nc, repositorySubjects.digests("repo-t"), BlockDigestsRequest, { restorePointId: "rp-1", diskId: "disk-a" }, BlockDigestsResponse);
    expect(digests.digests.length).toBe(10 * 32);
    expect(Buffer.from(digests.digests.subarray(0, 32)).equals(Buffer.alloc(32))).toBe(true);

    const out = join(dir, "restored-a.raw");
    const restoreDone = nc.subscribe(eventSubjects.task("src", "s-2", "restore-a", "done").replace(/\.done$/, ".*"));
    const opened = await request(nc, sourceMoverSubjects.restoreOpen("src-1"), RestoreOpenRequest, {
      sessionId: "s-2", taskId: "restore-a", attempt: 0, destination: { kind: "file", path: out }, sizeBytes: image.length, blockSize: MiB,
    }, ChannelOpened);
    await request(nc, targetMoverSubjects.restoreStart("tgt-1"), RestoreStartRequest, {
      sessionId: "s-2", taskId: "restore-a", attempt: 0, restorePointId: "rp-1", diskId: "disk-a", channel: opened.channel,
    }, TaskAccepted);
    const restored = await waitTaskEnd(restoreDone);
    expect(restored.outcome).toEqual({ kind: "restore", path: out, sizeBytes: image.length });
    expect(sha256(readFileSync(out))).toBe(sha256(image));

    const verifyDone = nc.subscribe(eventSubjects.task("tgt", "s-3", "verify-a", "done").replace(/\.done$/, ".*"));
    await request(nc, targetMoverSubjects.verifyStart("tgt-1"), VerifyStartRequest, { sessionId: "s-3", taskId: "verify-a", restorePointId: "rp-1", diskId: "disk-a" }, TaskAccepted);
    const verified = await waitTaskEnd(verifyDone);
    expect(verified.outcome).toEqual({ kind: "verify", blocksChecked: 7, corruptBlocks: 0, corruptBlockIndexes: [] });
  });

  it("stores identical blocks once across disks", async () => {
    const before = await request(nc, repositorySubjects.info("repo-t"), RepositoryInfoRequest, {}, RepositoryInfoResponse);
    const image = readFileSync(join(dir, "disk-a.raw"));
    writeFileSync(join(dir, "disk-b.raw"), image);
    const done = await backupDisk("s-4", "rp-2", "disk-b", join(dir, "disk-b.raw"), image.length);
    expect(done.stats.dedupedBlocks).toBe(7);
    expect(done.stats.storedBytes).toBe(0);
    const after = await request(nc, repositorySubjects.info("repo-t"), RepositoryInfoRequest, {}, RepositoryInfoResponse);
    expect(after.storedBlocks).toBe(before.storedBlocks);
    expect(after.storedBytes).toBe(before.storedBytes);
  });

  it("admits a task whose slot is still being freed instead of refusing it", async () => {
    const single = await startSourceMover({ id: "src-single", natsUrl: nats.url, slots: 1 });
    actors.push(single);
    const image = readFileSync(join(dir, "disk-a.raw"));
    const start = async (sessionId: string, taskId: string, throttleBytesPerSec: number) => {
      const opened = await request(nc, targetMoverSubjects.backupOpen("tgt-1"), BackupOpenRequest, {
        sessionId, taskId, attempt: 0, jobId: "job-1", restorePointId: `rp-${taskId}`, vmId: "vm-1", diskId: "disk-a", diskLabel: "a", sizeBytes: image.length, blockSize: MiB,
      }, ChannelOpened);
      const done = nc.subscribe(eventSubjects.task("tgt", sessionId, taskId, "done").replace(/\.done$/, ".*"));
      await request(nc, sourceMoverSubjects.backupStart("src-single"), BackupStartRequest, {
        sessionId, taskId, attempt: 0, restorePointId: `rp-${taskId}`, diskId: "disk-a", source: { mode: "file", path: join(dir, "disk-a.raw") },
        sizeBytes: image.length, blockSize: MiB, compression: "snappy", throttleBytesPerSec, channel: opened.channel,
      }, TaskAccepted, { timeoutMs: 10_000 });
      return done;
    };
    // The first task holds the only slot for about a second (throttled); the second is asked for
    // meanwhile, as the scheduler would after a terminal event, and must wait, not fail.
    const first = await start("s-slot", "slot-1", 6 * MiB);
    const second = start("s-slot", "slot-2", 0);
    const [firstDone, secondDone] = [await waitTaskEnd(first), await waitTaskEnd(await second)];
    expect(firstDone.outcome.kind).toBe("backup");
    expect(secondDone.outcome.kind).toBe("backup");
  });

  it("answers a backup of a missing disk with a not_found error reply and keeps serving", async () => {
    const opened = await request(nc, targetMoverSubjects.backupOpen("tgt-1"), BackupOpenRequest, {
      sessionId: "s-5", taskId: "disk-x", attempt: 0, jobId: "job-1", restorePointId: "rp-3", vmId: "vm-1", diskId: "disk-x", diskLabel: "x", sizeBytes: MiB, blockSize: MiB,
    }, ChannelOpened);
    await expect(
      request(nc, sourceMoverSubjects.backupStart("src-1"), BackupStartRequest, {
        sessionId: "s-5", taskId: "disk-x", attempt: 0, restorePointId: "rp-3", diskId: "disk-x", source: { mode: "file", path: join(dir, "missing.raw") },
        sizeBytes: MiB, blockSize: MiB, compression: "snappy", channel: opened.channel,
      }, TaskAccepted),
    ).rejects.toMatchObject({ code: "not_found", message: expect.stringMatching(/disk-x: cannot open/) });
    const canceled = await request(nc, targetMoverSubjects.taskCancel("tgt-1"), TaskCancelRequest, { taskId: "disk-x" }, TaskCancelResponse);
    expect(canceled.canceled).toBe(true);
    const info = await request(nc, repositorySubjects.info("repo-t"), RepositoryInfoRequest, {}, RepositoryInfoResponse);
    expect(info.restorePoints).toBe(1);
  });
});
