import { jetstream } from "@nats-io/jetstream";
import type { ActorCliOptions } from "../../cli/commands/actor.js";
import { Actor } from "../../lib/actor.js";
import { ConfigStore } from "../../lib/config-store.js";
import { openBucket } from "../../lib/jetstream-setup.js";
import { SessionStore } from "../../lib/session-store.js";
import { Buckets } from "../../protocol/mod.js";
import { ManagerClients } from "./clients.js";
import { Manager } from "./manager.js";
import { TriggerConsumer } from "./trigger-consumer.js";

export const DEFAULT_CONCURRENCY = 4;
export const DEFAULT_TASK_SILENCE_MS = 60_000;

/** Settings beyond the command line, for tests and embedding. */
export interface ManagerStartOptions extends ActorCliOptions {
  drainTimeoutMs?: number;
  /** A task whose movers report nothing for this long fails (default: FERRY_TASK_SILENCE_MS or 60 s). */
  taskSilenceMs?: number;
  /** Install SIGTERM/SIGINT handlers that drain and exit the process (default true). */
  handleSignals?: boolean;
}

function silenceFromEnv(): number {
  const fromEnv = Number(process.env.FERRY_TASK_SILENCE_MS);
  return Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : DEFAULT_TASK_SILENCE_MS;
}

/** `ferry actor manager`: runs job, restore and verify sessions from the trigger stream. */
export async function start(opts: ActorCliOptions): Promise<Actor> {
  return startManager(opts);
}

export async function startManager(opts: ManagerStartOptions): Promise<Actor> {
  const actor = await Actor.start({
    role: "manager",
    id: opts.id,
    natsUrl: opts.natsUrl,
    ...(opts.drainTimeoutMs === undefined ? {} : { drainTimeoutMs: opts.drainTimeoutMs }),
  });
  try {
    const nc = actor.nc;
    const js = jetstream(nc);
    const manager = new Manager(actor, {
      managerId: actor.id,
      js,
      store: new SessionStore(await openBucket(nc, Buckets.sessions)),
      config: new ConfigStore(await openBucket(nc, Buckets.config)),
      clients: new ManagerClients(nc),
      log: actor.log,
      silenceMs: opts.taskSilenceMs ?? silenceFromEnv(),
      shutdownSignal: actor.shutdownSignal,
      track: (work) => actor.track(work),
    });
    manager.serveEndpoints();
    const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
    const triggers = new TriggerConsumer(js, actor.log, concurrency, (trigger, msg) => manager.accept(trigger, msg));
    // Draining: no new triggers; running sessions continue until the drain timeout aborts them.
    actor.onDrain(() => triggers.stop());
    triggers.start();
    actor.serving();
    actor.log.info({ concurrency }, "pulling triggers");
  } catch (err) {
    await actor.stop("start-up failed").catch(() => undefined);
    throw err;
  }
  if (opts.handleSignals !== false) actor.exitOnSignals();
  return actor;
}
