import { Command } from "commander";
import { FerryError } from "../protocol/mod.js";
import { FERRY_VERSION } from "../lib/version.js";
import { registerActorCommand } from "./commands/actor.js";
import { registerSimulatorCommand } from "./commands/simulator.js";
import { registerDemoCommand } from "./commands/demo.js";
import { registerJobCommand } from "./commands/job.js";
import { registerRestoreCommands } from "./commands/restore.js";
import { registerRestorePointCommand } from "./commands/restore-point.js";
import { registerSessionCommand } from "./commands/session.js";
import { registerUpCommand } from "./commands/up.js";

/**
 * The `ferry` command line. Each command registers its options and help in cli/commands/<name>.ts;
 * what it does lives in cli/actions/<name>.ts, imported only when that command runs (a process
 * running one actor or command does not load the others). Commands talk to Ferry only over NATS,
 * never by reading repository files.
 */
export function buildProgram(): Command {
  const program = new Command("ferry")
    .description("Ferry: VM backup as independent actors on a NATS message bus")
    .version(FERRY_VERSION)
    .option("--nats <url>", "NATS server URL(s), comma-separated (default: $NATS_URL or nats://127.0.0.1:4222)")
    .showHelpAfterError()
    .configureHelp({ showGlobalOptions: true });
  registerActorCommand(program);
  registerSimulatorCommand(program);
  registerUpCommand(program);
  registerDemoCommand(program);
  registerJobCommand(program);
  registerSessionCommand(program);
  registerRestorePointCommand(program);
  registerRestoreCommands(program);
  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (err) {
    const message = err instanceof FerryError ? `${err.code}: ${err.message}` : (err as Error).message;
    process.stderr.write(`ferry: ${message}\n`);
    process.exitCode = 1;
  }
}

await main();
