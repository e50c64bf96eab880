import type { ActorCliOptions } from "../../cli/commands/actor.js";
import { Actor } from "../../lib/actor.js";

export async function start(opts: ActorCliOptions): Promise<Actor> {
  const actor = await Actor.start({ role: "manager", id: opts.id, natsUrl: opts.natsUrl });
  actor.serving();
  actor.exitOnSignals();
  return actor;
}
