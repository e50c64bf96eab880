import { hostname } from "node:os";
import { Command } from "commander";
import { ActorRole } from "../../protocol/services.js";
import { positiveInt } from "../options.js";

/** Options every actor takes, plus the role-specific ones each actor's `start` reads. */
export interface ActorCliOptions {
  id: string;
  natsUrl?: string;
  slots?: number;
  repository?: string;
  path?: string;
  concurrency?: number;
}

const STARTERS: Record<ActorRole, () => Promise<{ start: (opts: ActorCliOptions) => Promise<unknown> }>> = {
  manager: () => import("../../actors/manager/main.js"),
  scheduler: () => import("../../actors/scheduler/main.js"),
  broker: () => import("../../actors/broker/main.js"),
  "guest-processor": () => import("../../actors/guest-processor/main.js"),
  "source-mover": () => import("../../actors/source-mover/main.js"),
  "target-mover": () => import("../../actors/target-mover/main.js"),
};

export function registerActorCommand(program: Command): void {
  program
    .command("actor")
    .description("run one actor as this process (it talks to the others only through NATS)")
    .addArgument(
      new Command().createArgument("<role>", "actor role").choices(Object.values(ActorRole)),
    )
    .option("--id <id>", "instance id, unique per role (default: <role>-<host>)")
    .option("--slots <n>", "movers: concurrent task slots", positiveInt)
    .option("--repository <id>", "target mover: repository id it serves")
    .option("--path <dir>", "target mover: repository directory (default: from the configuration store)")
    .option("--concurrency <n>", "manager: sessions run at once", positiveInt)
    .addHelpText("after", "\nSIGTERM drains in-flight work and exits 0.")
    .action(async (role: ActorRole, opts: Omit<ActorCliOptions, "id" | "natsUrl"> & { id?: string }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<{ nats?: string }>();
      const module = await STARTERS[role]();
      await module.start({ ...opts, id: opts.id ?? `${role}-${hostname()}`.replace(/[^A-Za-z0-9_-]/g, "-"), natsUrl: globals.nats });
    });
}
