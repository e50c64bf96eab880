import type { FileHandle } from "node:fs/promises";
import { Actor } from "../../lib/actor.js";
import { BlockWorkers } from "../../lib/block-workers.js";
import { ConfigStore } from "../../lib/config-store.js";
import { ChannelReceiver, ChannelSender } from "../../lib/datachannel.js";
import { openBucket } from "../../lib/jetstream-setup.js";
import { MoverRuntime } from "../../lib/mover-runtime.js";
import {
  BackupStartRequest,
  Buckets,
  ChannelOpened,
  RestoreOpenRequest,
  TaskAccepted,
  TaskCancelRequest,
  TaskCancelResponse,
  emptyTaskStats,
  sourceMoverSubjects,
} from "../../protocol/mod.js";
import type { ActorCliOptions } from "../../cli/commands/actor.js";
import { openSource, readAndSend } from "./backup-reader.js";
import { RESTORE_CONCURRENCY, openRestoreDestination, restoreHandlers } from "./restore-writer.js";

const DEFAULT_SLOTS = 2;

/**
 * The source mover (proxy): reads snapshot disks and streams their blocks to a target mover
 * (backup), or receives blocks from one and writes a disk (restore).
 */
export async function start(opts: ActorCliOptions): Promise<Actor> {
  const actor = await Actor.start({ role: "source-mover", id: opts.id, natsUrl: opts.natsUrl });
  const config = await new ConfigStore(await openBucket(actor.nc, Buckets.config)).getProxy(opts.id);
  const slots = config?.maxTasks ?? opts.slots ?? DEFAULT_SLOTS;
  const mover = new MoverRuntime(actor, "src", slots);
  const workers = new BlockWorkers();
  actor.onStop(() => workers.close());

  actor.endpoint({
    name: "backup-start",
    subject: sourceMoverSubjects.backupStart(actor.id),
    request: BackupStartRequest,
    response: TaskAccepted,
    handler: async (req) => {
      const task = await mover.admit(req.taskId, req.sessionId);
      let source: FileHandle;
      try {
        source = await openSource(req);
      } catch (err) {
        mover.abandon(task);
        throw err;
      }
      const stats = emptyTaskStats();
      const sender = new ChannelSender(actor.nc, req.channel);
      mover.send(
        task,
        sender,
        stats,
        async () => {
          await readAndSend(req, source, workers, sender, stats, task.abort.signal);
          actor.log.info({ taskId: task.taskId, stats }, "backup sent and sealed");
        },
        () => source.close(),
      );
      return { taskId: req.taskId, moverId: actor.id };
    },
  });

  actor.endpoint({
    name: "restore-open",
    subject: sourceMoverSubjects.restoreOpen(actor.id),
    request: RestoreOpenRequest,
    response: ChannelOpened,
    handler: async (req) => {
      // The slot first: a destination is only created (or truncated) for a task that will run.
      const task = await mover.admit(req.taskId, req.sessionId);
      let destination: Awaited<ReturnType<typeof openRestoreDestination>>;
      try {
        destination = await openRestoreDestination(req);
      } catch (err) {
        mover.abandon(task);
        throw err;
      }
      const { handle, path } = destination;
      const stats = emptyTaskStats();
      const { handlers, arena } = restoreHandlers(req, workers, handle, path, stats, performance.now());
      const receiver = new ChannelReceiver(actor.nc, handlers, { concurrency: RESTORE_CONCURRENCY });
      mover.receive(task, receiver, stats, {
        sealed: () => actor.log.info({ taskId: task.taskId, path }, "restore written and synced"),
        cleanup: async () => {
          arena.close();
          await handle.close().catch(() => undefined); // already closed once sealed
        },
      });
      return { taskId: req.taskId, moverId: actor.id, channel: receiver.offer() };
    },
  });

  actor.endpoint({
    name: "task-cancel",
    subject: sourceMoverSubjects.taskCancel(actor.id),
    request: TaskCancelRequest,
    response: TaskCancelResponse,
    handler: async (req) => ({ taskId: req.taskId, canceled: mover.cancel(req.taskId, req.reason) }),
  });

  mover.start();
  actor.serving();
  actor.exitOnSignals();
  actor.log.info({ slots }, "source mover ready");
  return actor;
}
