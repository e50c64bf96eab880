import { Option, type Command } from "commander";
import { collect, lazyAction, positiveInt, sizeOption } from "../options.js";

export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("end to end on one machine: back up the demo VMs, restore every disk, verify, and compare byte for byte")
    .option("--vms <n>", "demo VMs (default 3, or one per --disk-image)", positiveInt)
    .addOption(new Option("--disk-size <size>", "size of each generated disk").argParser(sizeOption).default(256 * 1024 * 1024, "256MiB"))
    .option("--disk-image <path>", "use this raw image file as a disk instead of generated content (repeatable)", collect)
    .option("--workdir <dir>", "where everything goes (default: a new temporary folder)")
    .option("--json", "print one JSON object on stdout (progress and logs go to stderr)")
    .option("--clean", "after a passing run, delete the bulky data (disks, repository, restored files); the report's paths then no longer exist")
    .addHelpText(
      "after",
      `
Uses $NATS_URL (or --nats) when set, else starts a private nats-server in the workdir.
The workdir keeps logs/, demo-report.json and the data (the disks and restored files the report
names, so anyone can check the claim), unless --clean is given and the run passed.
Exit code: 0 when the backup succeeded (or warned), every restore succeeded, every verify passed
and every restored disk is byte-identical to its snapshot; 1 otherwise.`,
    )
    .action(lazyAction(async () => (await import("../actions/demo.js")).demo));
}
