import { Command } from "commander";
import { withContext } from "../context.js";
import { printJson } from "../format.js";
import { listRestorePoints } from "../repository.js";
import { renderRestorePointList } from "../report.js";

export function registerRestorePointCommand(program: Command): void {
  const rp = program.command("restore-point").description("restore points in a repository (asked of its target mover)");

  rp.command("list")
    .description("list the restore points of a repository, oldest first")
    .requiredOption("--repository <id>", "repository id")
    .option("--job <jobId>", "only restore points of this job")
    .option("--vm <vmId>", "only restore points of this VM")
    .option("--json", "print JSON")
    .action(async (opts: { repository: string; job?: string; vm?: string; json?: boolean }, cmd: Command) => {
      await withContext(cmd, async (ctx) => {
        const points = await listRestorePoints(ctx.nc, opts.repository, { ...(opts.job ? { jobId: opts.job } : {}), ...(opts.vm ? { vmId: opts.vm } : {}) });
        points.sort((a, b) => a.createdAt - b.createdAt);
        if (opts.json) printJson(points);
        else process.stdout.write(`${renderRestorePointList(points)}\n`);
      });
    });
}
