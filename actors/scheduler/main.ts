import type { ActorCliOptions } from "../../cli/commands/actor.js";
import { Actor } from "../../lib/actor.js";
import {
  AssignRequest,
  AssignResponse,
  Discover,
  ErrorCode,
  FerryError,
  MoverHeartbeat,
  ReleaseRequest,
  ReleaseResponse,
  StatusRequest,
  StatusResponse,
  decode,
  encode,
  schedulerSubjects,
  type Assignment,
  type BodyIn,
} from "../../protocol/mod.js";
import { SlotTable, type SchedulerEvent, type SlotTableOptions } from "./slots.js";

/** Knobs tests turn down; the command line uses the defaults. */
export interface SchedulerTuning extends SlotTableOptions {
  /** How often offline movers and expired queue places are looked for. */
  tickMs?: number;
}

/**
 * The resource scheduler: keeps the table of movers from their heartbeats and hands out task
 * slots (`assign`, long-polled), takes them back (`release`) and shows its state (`status`).
 *
 * Single instance for now: all state is in memory and rebuilt from heartbeats after a restart
 * (movers report their active tasks, which count as used slots). A second scheduler would need
 * shared reservations; see `SlotTable.assign` for where the KV compare-and-set would go.
 */
export async function start(opts: ActorCliOptions, tuning: SchedulerTuning = {}): Promise<Actor> {
  const actor = await Actor.start({ role: "scheduler", id: opts.id, natsUrl: opts.natsUrl });
  const log = actor.log;
  /** Long-polling assign requests per task, woken when the task gets its slots. */
  const waiters = new Map<string, Set<(assignment: Assignment | undefined) => void>>();

  const onEvent = (event: SchedulerEvent): void => {
    switch (event.kind) {
      case "assigned": {
        const a = event.assignment;
        log.info({ taskId: a.taskId, sessionId: a.sessionId, proxyId: a.proxyId, targetMoverId: a.targetMoverId }, "task assigned");
        for (const wake of waiters.get(a.taskId) ?? []) wake(a);
        waiters.delete(a.taskId);
        break;
      }
      case "reclaimed":
        log.warn({ taskId: event.assignment.taskId, sessionId: event.assignment.sessionId, reason: event.reason }, "slots reclaimed");
        break;
      case "dropped":
        log.warn({ taskId: event.taskId, sessionId: event.sessionId, reason: event.reason }, "queued task dropped");
        break;
      case "mover-online":
        log.info({ moverId: event.moverId, role: event.role }, "mover online");
        break;
      case "mover-offline":
        log.warn({ moverId: event.moverId, role: event.role, lastSeenAt: event.lastSeenAt }, "mover offline");
        break;
    }
  };
  const table = new SlotTable(tuning, onEvent);

  const waitForAssignment = (taskId: string, waitMs: number): Promise<Assignment | undefined> =>
    new Promise((resolve) => {
      const set = waiters.get(taskId) ?? new Set();
      waiters.set(taskId, set);
      const wake = (assignment: Assignment | undefined) => {
        clearTimeout(timer);
        set.delete(wake);
        resolve(assignment);
      };
      const timer = setTimeout(() => {
        wake(undefined);
        if (set.size === 0 && waiters.get(taskId) === set) waiters.delete(taskId);
      }, waitMs);
      set.add(wake);
    });

  const heartbeats = actor.nc.subscribe(schedulerSubjects.allHeartbeats(), {
    callback: (err, msg) => {
      if (err) {
        log.error({ err: err.message }, "heartbeat subscription failed");
        return;
      }
      try {
        const hb = decode(MoverHeartbeat, msg.data);
        // The subject names the mover too; a mismatch is a confused or misconfigured mover.
        const expected = schedulerSubjects.heartbeat(hb.role === "source" ? "src" : "tgt", hb.moverId);
        if (msg.subject !== expected) {
          throw new FerryError(ErrorCode.BadRequest, `heartbeat of ${hb.role} mover ${hb.moverId} arrived on ${msg.subject}, expected ${expected}`);
        }
        table.heartbeat(hb, Date.now());
      } catch (e) {
        log.warn({ subject: msg.subject, err: (e as Error).message }, "ignored malformed heartbeat");
      }
    },
  });

  actor.endpoint({
    name: "assign",
    subject: schedulerSubjects.assign(),
    request: AssignRequest,
    response: AssignResponse,
    handler: async (req): Promise<BodyIn<typeof AssignResponse>> => {
      const first = table.ask(req, Date.now());
      if (first.status === "assigned") return first;
      if (req.waitMs > 0) {
        const assignment = await waitForAssignment(req.taskId, req.waitMs);
        if (assignment) return { status: "assigned", assignment };
      }
      const current = table.lookup(req.taskId);
      if (!current) throw new FerryError(ErrorCode.Canceled, `task ${req.taskId} left the queue while waiting (released)`);
      return current;
    },
  });

  actor.endpoint({
    name: "release",
    subject: schedulerSubjects.release(),
    request: ReleaseRequest,
    response: ReleaseResponse,
    handler: async (req) => {
      const released = table.release(req.taskId, Date.now());
      log.info({ taskId: req.taskId, released }, "release");
      return { released };
    },
  });

  actor.endpoint({
    name: "status",
    subject: schedulerSubjects.status(),
    request: StatusRequest,
    response: StatusResponse,
    handler: async () => table.status(Date.now()),
  });

  const ticker = setInterval(() => table.tick(Date.now()), tuning.tickMs ?? 1_000);
  ticker.unref();

  // Long polls answer at once (queued) so draining does not wait out their waitMs.
  actor.onDrain(() => {
    for (const set of waiters.values()) for (const wake of [...set]) wake(undefined);
    waiters.clear();
  });
  actor.onStop(() => {
    clearInterval(ticker);
    heartbeats.unsubscribe();
  });

  // Movers answer a discover with a heartbeat, so the table fills now, not a heartbeat later.
  actor.nc.publish(schedulerSubjects.discover(), encode(Discover, { schedulerId: actor.id, at: Date.now() }));
  await actor.nc.flush();

  actor.serving();
  actor.exitOnSignals();
  return actor;
}
