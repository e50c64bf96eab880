import { resolve } from "node:path";
import { Actor } from "../../lib/actor.js";
import { digestHex } from "../../lib/block-codec.js";
import { BlockWorkers } from "../../lib/block-workers.js";
import { ConfigStore } from "../../lib/config-store.js";
import { ChannelReceiver, ChannelSender } from "../../lib/datachannel.js";
import { openBucket } from "../../lib/jetstream-setup.js";
import { MoverRuntime, type MoverTask } from "../../lib/mover-runtime.js";
import {
  BackupOpenRequest,
  BlockDigestsRequest,
  BlockDigestsResponse,
  Buckets,
  ChannelOpened,
  CommitRestorePointRequest,
  CommitRestorePointResponse,
  ErrorCode,
  FerryError,
  GetRestorePointRequest,
  GetRestorePointResponse,
  ListRestorePointsRequest,
  ListRestorePointsResponse,
  RepositoryInfoRequest,
  RepositoryInfoResponse,
  RestoreStartRequest,
  TaskAccepted,
  TaskCancelRequest,
  TaskCancelResponse,
  VerifyStartRequest,
  emptyTaskStats,
  repositorySubjects,
  targetMoverSubjects,
  type Msg,
  type TaskStats,
} from "../../protocol/mod.js";
import type { ActorCliOptions } from "../../cli/commands/actor.js";
import { readManifestBlocks } from "./block-reader.js";
import { ingestHandlers } from "./disk-ingest.js";
import { DIGEST_BYTES, REPOSITORY_FORMAT_VERSION } from "./repository/format.js";
import { Repository } from "./repository/repository.js";

const DEFAULT_SLOTS = 4;

/**
 * The target mover: runs on the repository's host, receives backups into it, serves restore
 * points (catalog, block digests, restores) and verifies them.
 */
export async function start(opts: ActorCliOptions): Promise<Actor> {
  if (!opts.repository) throw new FerryError(ErrorCode.BadRequest, "target mover needs --repository <id>", { retryable: false });
  const repositoryId = opts.repository;
  const actor = await Actor.start({ role: "target-mover", id: opts.id, natsUrl: opts.natsUrl, metadata: { repositoryId } });
  const record = await new ConfigStore(await openBucket(actor.nc, Buckets.config)).getRepository(repositoryId);
  const path = opts.path ?? record?.path;
  if (!path) {
    await actor.stop("no repository path");
    throw new FerryError(ErrorCode.NotFound, `repository ${repositoryId} has no path: give --path or add it to the configuration store`, { retryable: false });
  }
  const repo = await Repository.open(resolve(path), { id: repositoryId });
  let freeBytes = (await repo.info()).freeBytes;
  const slots = record?.maxTasks ?? opts.slots ?? DEFAULT_SLOTS;
  const mover = new MoverRuntime(actor, "tgt", slots, () => ({ repositoryId, freeBytes }));
  const workers = new BlockWorkers();
  const freeSpaceTimer = setInterval(() => void repo.info().then((i) => (freeBytes = i.freeBytes)).catch(() => undefined), 10_000);
  freeSpaceTimer.unref();
  actor.onStop(async () => {
    clearInterval(freeSpaceTimer);
    await repo.close();
    await workers.close();
  });

  actor.endpoint({
    name: "backup-open",
    subject: targetMoverSubjects.backupOpen(actor.id),
    request: BackupOpenRequest,
    response: ChannelOpened,
    handler: async (req) => {
      const task = await mover.admit(req.taskId, req.sessionId);
      const stats = emptyTaskStats();
      const receiver = new ChannelReceiver(actor.nc, ingestHandlers(repo, req, stats, performance.now()));
      mover.receive(task, receiver, stats, {
        sealed: (sealed) => actor.log.info({ taskId: task.taskId, restorePointId: req.restorePointId, diskId: req.diskId, stats: sealed.stats }, "disk backup durable"),
      });
      return { taskId: req.taskId, moverId: actor.id, channel: receiver.offer() };
    },
  });

  actor.endpoint({
    name: "restore-start",
    subject: targetMoverSubjects.restoreStart(actor.id),
    request: RestoreStartRequest,
    response: TaskAccepted,
    handler: async (req) => {
      const manifest = await repo.readManifest(req.restorePointId, req.diskId);
      const task = await mover.admit(req.taskId, req.sessionId);
      sendRestore(actor, mover, repo, task, req, manifest);
      return { taskId: req.taskId, moverId: actor.id };
    },
  });

  actor.endpoint({
    name: "verify-start",
    subject: targetMoverSubjects.verifyStart(actor.id),
    request: VerifyStartRequest,
    response: TaskAccepted,
    handler: async (req) => {
      const manifest = await repo.readManifest(req.restorePointId, req.diskId);
      const task = await mover.admit(req.taskId, req.sessionId);
      mover.run(task, () => verifyDisk(mover, repo, workers, task, manifest));
      return { taskId: req.taskId, moverId: actor.id };
    },
  });

  actor.endpoint({
    name: "task-cancel",
    subject: targetMoverSubjects.taskCancel(actor.id),
    request: TaskCancelRequest,
    response: TaskCancelResponse,
    handler: async (req) => ({ taskId: req.taskId, canceled: mover.cancel(req.taskId, req.reason) }),
  });

  // Catalog requests: any target mover serving the repository answers (queue group).
  actor.endpoint({
    name: "repository-info",
    subject: repositorySubjects.info(repositoryId),
    request: RepositoryInfoRequest,
    response: RepositoryInfoResponse,
    handler: async () => ({ repositoryId, formatVersion: REPOSITORY_FORMAT_VERSION, ...(await repo.info()) }),
  });
  actor.endpoint({
    name: "restore-point-commit",
    subject: repositorySubjects.commit(repositoryId),
    request: CommitRestorePointRequest,
    response: CommitRestorePointResponse,
    handler: async (req) => {
      const restorePoint = await repo.commitRestorePoint(req.restorePoint, req.disks);
      actor.log.info({ restorePointId: restorePoint.id, vm: restorePoint.vm.name, disks: restorePoint.disks.length }, "restore point committed");
      return { restorePoint };
    },
  });
  actor.endpoint({
    name: "restore-point-list",
    subject: repositorySubjects.list(repositoryId),
    request: ListRestorePointsRequest,
    response: ListRestorePointsResponse,
    handler: async (req) => ({ restorePoints: await repo.listRestorePoints(req) }),
  });
  actor.endpoint({
    name: "restore-point-get",
    subject: repositorySubjects.get(repositoryId),
    request: GetRestorePointRequest,
    response: GetRestorePointResponse,
    handler: async (req) => ({ restorePoint: await repo.getRestorePoint(req.restorePointId) }),
  });
  actor.endpoint({
    name: "restore-point-digests",
    subject: repositorySubjects.digests(repositoryId),
    request: BlockDigestsRequest,
    response: BlockDigestsResponse,
    handler: async (req) => {
      const manifest = await repo.readManifest(req.restorePointId, req.diskId);
      const { totalBlocks, blockSize } = manifest.header;
      const from = Math.min(req.fromBlock, totalBlocks);
      const to = Math.min(totalBlocks, from + req.maxBlocks);
      return {
        restorePointId: req.restorePointId,
        diskId: req.diskId,
        blockSize,
        totalBlocks,
        fromBlock: from,
        digests: manifest.digests.subarray(from * DIGEST_BYTES, to * DIGEST_BYTES),
        nextBlock: to < totalBlocks ? to : undefined,
      };
    },
  });

  mover.start();
  actor.serving();
  actor.exitOnSignals();
  actor.log.info({ repositoryId, path: repo.path, slots }, "target mover ready");
  return actor;
}

/** Streams a restore point's disk to the receiving source mover. */
function sendRestore(
  actor: Actor,
  mover: MoverRuntime,
  repo: Repository,
  task: MoverTask,
  req: Msg<typeof RestoreStartRequest>,
  manifest: Awaited<ReturnType<Repository["readManifest"]>>,
): void {
  const started = performance.now();
  const stats = emptyTaskStats();
  const sender = new ChannelSender(actor.nc, req.channel);
  const { totalBlocks, blockSize, sizeBytes } = manifest.header;
  mover.send(task, sender, stats, async () => {
    let sent = 0;
    for await (const block of readManifestBlocks(repo, manifest, task.abort.signal)) {
      const { entry, stored } = await block.read;
      await sender.sendBlock({ block: block.index, digest: digestHex(entry.digest), codec: entry.codec, rawLen: entry.rawLen, sum: entry.sum, stored });
      sent++;
      stats.blocks++;
      stats.readBytes += stored.length;
      stats.dataBytes += entry.rawLen;
      stats.transferredBytes += stored.length;
      stats.processedBytes = Math.min(sizeBytes, (block.index + 1) * blockSize);
    }
    stats.processedBytes = sizeBytes;
    stats.zeroBlocksSkipped = totalBlocks - sent;
    stats.durationMs = Math.round(performance.now() - started);
    await sender.end({ blocks: sent, totalBlocks, sizeBytes, stats });
  });
}

/** Blocks checked at once: reads overlap with the block workers' decompression and hashing. */
const VERIFY_CONCURRENCY = 6;
const MAX_REPORTED_CORRUPT = 16;

async function verifyDisk(
  mover: MoverRuntime,
  repo: Repository,
  workers: BlockWorkers,
  task: MoverTask,
  manifest: Awaited<ReturnType<Repository["readManifest"]>>,
): Promise<void> {
  const started = performance.now();
  const stats: TaskStats = emptyTaskStats();
  const corrupt: number[] = [];
  let corruptBlocks = 0;
  let checked = 0;
  const { totalBlocks, blockSize, sizeBytes } = manifest.header;
  const arena = workers.createArena(blockSize, VERIFY_CONCURRENCY);
  const stopReports = mover.reportProgress(task, stats);
  const check = async (index: number, digest: Buffer, read: ReturnType<Repository["readBlock"]>) => {
    const slot = await arena.acquire();
    try {
      const { entry, stored } = await read;
      stats.readBytes += stored.length;
      if (stored.length > blockSize) throw new FerryError(ErrorCode.Corrupt, "stored block larger than a block");
      arena.view(slot).set(stored);
      await arena.decode(slot, { block: index, storedLength: stored.length, codec: entry.codec, rawLength: entry.rawLen, digest: digestHex(digest), sum: entry.sum });
      stats.dataBytes += entry.rawLen;
    } catch (err) {
      corruptBlocks++;
      if (corrupt.length < MAX_REPORTED_CORRUPT) corrupt.push(index);
      mover.actor.log.warn({ taskId: task.taskId, block: index, err: (err as Error).message }, "block failed verification");
    } finally {
      arena.release(slot);
    }
    checked++;
    stats.blocks = checked;
  };
  try {
    const running = new Set<Promise<void>>();
    for await (const block of readManifestBlocks(repo, manifest, task.abort.signal)) {
      const p = check(block.index, block.digest, block.read).finally(() => running.delete(p));
      running.add(p);
      stats.processedBytes = Math.min(sizeBytes, (block.index + 1) * blockSize);
      if (running.size >= VERIFY_CONCURRENCY) await Promise.race(running);
    }
    await Promise.all(running);
    stats.processedBytes = sizeBytes;
    stats.zeroBlocksSkipped = totalBlocks - checked;
    stats.durationMs = Math.round(performance.now() - started);
    await mover.done(task, stats, { kind: "verify", blocksChecked: checked, corruptBlocks, corruptBlockIndexes: corrupt.sort((a, b) => a - b) });
  } catch (err) {
    await mover.failed(task, stats, mover.failureOf(task, err));
  } finally {
    stopReports();
    arena.close();
  }
}
