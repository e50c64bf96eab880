import type { Command } from "commander";
import { collect, lazyAction } from "../options.js";

export function registerRestoreCommands(program: Command): void {
  program
    .command("restore")
    .description("restore a restore point: its disks to raw image files, or the whole VM as a new VM")
    .argument("<restorePointId>", "restore point id (`ferry restore-point list`)")
    .requiredOption("--repository <id>", "repository holding the restore point")
    .option("--to-dir <dir>", "write each disk to <dir>/<vmName>_<diskId>.raw (on the proxy's host)")
    .option("--vm-name <name>", "create a new VM with this name and restore every disk into it")
    .option("--hypervisor <id>", "hypervisor for --vm-name")
    .option("--disk <diskId>", "with --to-dir: restore only this disk (repeatable)", collect)
    .option("--overwrite", "with --to-dir: replace existing files")
    .option("--proxy <id>", "run on this proxy (repeatable; default: any)", collect)
    .option("--request-id <key>", "idempotency key (default: a fresh random id)")
    .option("--wait", "wait for the restore to end, then print its report")
    .option("--json", "print JSON")
    .addHelpText("after", "\nThe restore runs on the movers; this command never reads repository files.\nExit code with --wait: 0 on success or warning, 1 on failure.")
    .action(lazyAction(async () => (await import("../actions/restore.js")).restore));

  program
    .command("verify")
    .description("re-read every block of a restore point on its target mover and check checksums and digests")
    .argument("<restorePointId>", "restore point id")
    .requiredOption("--repository <id>", "repository holding the restore point")
    .option("--request-id <key>", "idempotency key (default: a fresh random id)")
    .option("--wait", "wait for the verify to end, then print its report")
    .option("--json", "print JSON")
    .addHelpText("after", "\nExit code with --wait: 0 when every block checks out, 1 otherwise.")
    .action(lazyAction(async () => (await import("../actions/restore.js")).verify));
}
