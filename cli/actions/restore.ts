import type { Command } from "commander";
import { withContext } from "../context.js";
import { getRestorePoint } from "../repository.js";
import { restoreTargetFor } from "../restore-target.js";
import { reportTriggered, triggerRestore, triggerVerify } from "../sessions.js";

/** `ferry restore` and `ferry verify` (options in cli/commands/restore.ts). */

interface RestoreOptions {
  repository: string;
  toDir?: string;
  vmName?: string;
  hypervisor?: string;
  disk?: string[];
  overwrite?: boolean;
  proxy?: string[];
  requestId?: string;
  wait?: boolean;
  json?: boolean;
}

export async function restore(restorePointId: string, opts: RestoreOptions, cmd: Command): Promise<void> {
  await withContext(cmd, async (ctx) => {
    const restorePoint = await getRestorePoint(ctx.nc, opts.repository, restorePointId);
    const target = restoreTargetFor(restorePoint, {
      ...(opts.toDir !== undefined ? { toDir: opts.toDir } : {}),
      ...(opts.vmName !== undefined ? { vmName: opts.vmName } : {}),
      ...(opts.hypervisor !== undefined ? { hypervisor: opts.hypervisor } : {}),
      disks: opts.disk ?? [],
      overwrite: opts.overwrite ?? false,
    });
    const triggered = await triggerRestore(ctx, { repositoryId: opts.repository, restorePointId, target, proxies: opts.proxy ?? [] }, opts.requestId);
    await reportTriggered(ctx, triggered, opts, { target });
  });
}

export async function verify(restorePointId: string, opts: { repository: string; requestId?: string; wait?: boolean; json?: boolean }, cmd: Command): Promise<void> {
  await withContext(cmd, async (ctx) => {
    await getRestorePoint(ctx.nc, opts.repository, restorePointId); // unknown id: an error now, not a failed session
    const triggered = await triggerVerify(ctx, { repositoryId: opts.repository, restorePointId }, opts.requestId);
    await reportTriggered(ctx, triggered, opts);
  });
}
