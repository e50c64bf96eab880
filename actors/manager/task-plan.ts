import { createHash } from "node:crypto";
import { Id, TaskState, emptyTaskStats, type TaskRecord } from "../../protocol/mod.js";

/**
 * A task id per VM disk: `<vmId>-<diskId>-<8 hex of the session id>`. Schedulers and movers know
 * a task by its id alone (release, cancel), so two sessions backing up the same VM at once must
 * not share ids. Hashed when the readable form would not be a valid Id token.
 */
export function taskIdFor(sessionId: string, vmId: string, diskId: string, taken: ReadonlySet<string> = new Set()): string {
  const suffix = createHash("sha256").update(sessionId).digest("hex").slice(0, 8);
  let id = `${vmId}-${diskId}-${suffix}`;
  if (!Id.safeParse(id).success) id = `t-${createHash("sha256").update(`${vmId}\0${diskId}`).digest("hex").slice(0, 24)}-${suffix}`;
  let unique = id;
  for (let n = 2; taken.has(unique); n++) unique = `${id.slice(0, 120)}-${n}`;
  return unique;
}

/** A disk that gets a task. */
export interface TaskDisk {
  diskId: string;
  label: string;
  sizeBytes: number;
}

/**
 * One pending task per disk of a VM. `taken` holds the task ids the session gave already (a backup
 * has several VMs) and receives these.
 */
export function pendingTasks(
  sessionId: string,
  kind: TaskRecord["kind"],
  vm: { id: string; name: string },
  disks: readonly TaskDisk[],
  place: { repositoryId: string; restorePointId: string },
  taken = new Set<string>(),
): TaskRecord[] {
  return disks.map((disk) => {
    const id = taskIdFor(sessionId, vm.id, disk.diskId, taken);
    taken.add(id);
    return {
      id,
      kind,
      vmId: vm.id,
      vmName: vm.name,
      diskId: disk.diskId,
      diskLabel: disk.label,
      sizeBytes: disk.sizeBytes,
      state: TaskState.Pending,
      attempt: 0,
      repositoryId: place.repositoryId,
      restorePointId: place.restorePointId,
      stats: emptyTaskStats(),
    };
  });
}
