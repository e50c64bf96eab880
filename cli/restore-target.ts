import { join, resolve } from "node:path";
import { ErrorCode, FerryError, type RestorePoint, type RestoreTarget } from "../protocol/mod.js";

/**
 * Maps what the operator asked (`--to-dir` or `--vm-name/--hypervisor`, `--disk`) to the
 * RestoreTarget of a RestoreRequest. Pure, so the naming of restored files is easy to test.
 */
export interface RestoreTargetOptions {
  toDir?: string;
  vmName?: string;
  hypervisor?: string;
  /** Restore only these disks (files only); all disks when empty. */
  disks?: readonly string[];
  overwrite?: boolean;
  /** Base for a relative `toDir`; the current directory by default. */
  cwd?: string;
}

/** `web server/01` → `web_server_01`: a VM name made safe as part of a file name. */
export function fileNamePart(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9_.-]+/g, "_").replace(/^[.]+/, "_");
  return safe.length > 0 ? safe : "vm";
}

/** Where a restored disk goes: `<dir>/<vmName>_<diskId>.raw`, absolute. */
export function restoredDiskPath(dir: string, vmName: string, diskId: string, cwd = process.cwd()): string {
  return resolve(cwd, join(dir, `${fileNamePart(vmName)}_${diskId}.raw`));
}

export function restoreTargetFor(restorePoint: Pick<RestorePoint, "id" | "vm" | "disks">, opts: RestoreTargetOptions): RestoreTarget {
  const wanted = opts.disks ?? [];
  if ((opts.toDir === undefined) === (opts.vmName === undefined)) {
    throw new FerryError(ErrorCode.BadRequest, "give exactly one of --to-dir DIR or --vm-name NAME", { retryable: false });
  }
  if (opts.vmName !== undefined) {
    if (!opts.hypervisor) throw new FerryError(ErrorCode.BadRequest, "--vm-name needs --hypervisor", { retryable: false });
    if (wanted.length > 0) throw new FerryError(ErrorCode.BadRequest, "--disk applies to --to-dir only: a VM restore restores every disk", { retryable: false });
    return { kind: "vm", hypervisorId: opts.hypervisor, name: opts.vmName };
  }
  const known = new Set(restorePoint.disks.map((d) => d.diskId));
  const unknown = wanted.filter((id) => !known.has(id));
  if (unknown.length > 0) {
    throw new FerryError(ErrorCode.NotFound, `restore point ${restorePoint.id} has no disk ${unknown.join(", ")} (disks: ${[...known].join(", ")})`, {
      retryable: false,
    });
  }
  const disks = restorePoint.disks
    .filter((d) => wanted.length === 0 || wanted.includes(d.diskId))
    .map((d) => ({ diskId: d.diskId, path: restoredDiskPath(opts.toDir!, restorePoint.vm.name, d.diskId, opts.cwd) }));
  if (disks.length === 0) throw new FerryError(ErrorCode.BadRequest, `restore point ${restorePoint.id} has no disks`, { retryable: false });
  return { kind: "files", disks, overwrite: opts.overwrite ?? false };
}
