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
  ErrorCode,
  FerryError,
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
      const source = await openSource(req);
      let task;
      try {
        task = mover.admit(req.taskId, req.sessionId);
      } catch (err) {
        await source.close();
        throw err;
      }
      const stats = emptyTaskStats();
      const sender = new ChannelSender(actor.nc, req.channel);
      mover.run(task, async () => {
        const stopReports = mover.every(task, () => mover.progress(task, stats));
        try {
          await readAndSend(req, source, workers, sender, stats, task.abort.signal);
          mover.progress(task, stats);
          actor.log.info({ taskId: task.taskId, stats }, "backup sent and sealed");
        } catch (err) {
          const error = FerryError.from(task.abort.signal.aborted ? task.abort.signal.reason : err, ErrorCode.Io);
          sender.abort(error);
          await mover.failed(task, stats, error);
        } finally {
          stopReports();
          sender.close();
        }
      });
      return { taskId: req.taskId, moverId: actor.id };
    },
  });

  actor.endpoint({
    name: "restore-open",
    subject: sourceMoverSubjects.restoreOpen(actor.id),
    request: RestoreOpenRequest,
    response: ChannelOpened,
    handler: async (req) => {
      const { handle, path } = await openRestoreDestination(req);
      let task;
      try {
        task = mover.admit(req.taskId, req.sessionId);
      } catch (err) {
        await handle.close();
        throw err;
      }
      const stats = emptyTaskStats();
      const { handlers, arena } = restoreHandlers(req, workers, handle, path, stats, performance.now());
      const receiver = new ChannelReceiver(actor.nc, handlers, { concurrency: RESTORE_CONCURRENCY });
      receiver.start();
      task.abort.signal.addEventListener("abort", () => receiver.fail(FerryError.from(task.abort.signal.reason, ErrorCode.Canceled)), { once: true });
      mover.run(task, async () => {
        try {
          const sealed = await receiver.done;
          await mover.done(task, sealed.stats, sealed.outcome);
          actor.log.info({ taskId: task.taskId, path }, "restore written and synced");
        } catch (err) {
          await handle.close().catch(() => undefined);
          await mover.failed(task, stats, FerryError.from(err, ErrorCode.Io));
        } finally {
          arena.close();
        }
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
