/**
 * Seams for guest processing that the roadmap adds later. Nothing calls these yet; they mark
 * where the work plugs in so it does not end up in the wrong actor.
 */

/** A byte range of a VM disk whose content need not be backed up. */
export interface ExcludedExtent {
  diskId: string;
  offsetBytes: number;
  lengthBytes: number;
  /** Why: "swap", "pagefile", "hibernation", or an excluded path. */
  reason: string;
}

/**
 * Roadmap (exclusions, swap/page-file skipping): while the VM is quiesced, ask the agent
 * (a new `ferry.agent.<vmId>.extents` verb) for the disk extents of swap and page files and of
 * job-excluded paths; the manager passes them with `backup.start` and the source mover sends those
 * blocks as zero blocks. Must be asked between freeze and snapshot so the extents match the
 * snapshot. Today: nothing is excluded.
 */
export async function excludedExtents(_vmId: string, _freezeId: string): Promise<ExcludedExtent[]> {
  return [];
}

/**
 * Roadmap (transaction-log truncation): once `repository.rp.commit` has made the restore point
 * durable, and never before, the manager asks the guest processor (a new
 * `ferry.svc.guest.truncate` subject) to have the agent truncate the applications' transaction
 * logs. Truncating earlier would lose log records that no durable restore point holds. Today:
 * nothing is truncated.
 */
export async function truncateLogsAfterRestorePoint(_vmId: string, _restorePointId: string): Promise<void> {
  // Intentionally empty until the agent verb exists.
}
