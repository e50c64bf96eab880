import { Option, type Command } from "commander";
import { lazyAction, positiveInt, sizeOption } from "../options.js";

export function registerUpCommand(program: Command): void {
  program
    .command("up")
    .description("run the embedded local stack (nats-server, simulator, every actor) with the demo inventory until Ctrl-C")
    .option("--workdir <dir>", "where the stack keeps its state, logs, disks and repository", ".ferry")
    .option("--vms <n>", "demo VMs", positiveInt, 3)
    .addOption(new Option("--disk-size <size>", "size of each demo disk, e.g. 256MiB or 1GiB").argParser(sizeOption).default(256 * 1024 * 1024, "256MiB"))
    .option("--proxies <n>", "source movers (proxy-1..N)", positiveInt, 1)
    .addHelpText(
      "after",
      "\nWith --nats or $NATS_URL the stack uses that server instead of starting one.\nState persists in the workdir: run `ferry up` again to continue where you stopped.",
    )
    .action(lazyAction(async () => (await import("../actions/up.js")).up));
}
