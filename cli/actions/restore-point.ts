import type { Command } from "commander";
import { withContext } from "../context.js";
import { printJson } from "../format.js";
import { listRestorePoints } from "../repository.js";
import { renderRestorePointList } from "../report.js";

/** `ferry restore-point list` (options in cli/commands/restore-point.ts). */
export async function restorePointList(opts: { repository: string; job?: string; vm?: string; json?: boolean }, cmd: Command): Promise<void> {
  await withContext(cmd, async (ctx) => {
    const points = await listRestorePoints(ctx.nc, opts.repository, { ...(opts.job ? { jobId: opts.job } : {}), ...(opts.vm ? { vmId: opts.vm } : {}) });
    points.sort((a, b) => a.createdAt - b.createdAt);
    if (opts.json) printJson(points);
    else process.stdout.write(`${renderRestorePointList(points)}\n`);
  });
}
