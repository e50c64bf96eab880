import type { Command } from "commander";
import { lazyAction } from "../options.js";

export function registerRestorePointCommand(program: Command): void {
  const rp = program.command("restore-point").description("restore points in a repository (asked of its target mover)");

  rp.command("list")
    .description("list the restore points of a repository, oldest first")
    .requiredOption("--repository <id>", "repository id")
    .option("--job <jobId>", "only restore points of this job")
    .option("--vm <vmId>", "only restore points of this VM")
    .option("--json", "print JSON")
    .action(lazyAction(async () => (await import("../actions/restore-point.js")).restorePointList));
}
