import { open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { ErrorCode, FerryError, Id, VmInfo } from "../../protocol/mod.js";
import { Mutex } from "../mutex.js";

/**
 * What the simulator must remember across restarts, kept as a small JSON file in the first
 * datastore: snapshots that still exist (with their delta files), the retained snapshot images,
 * and the VMs made by `vm.create`.
 */
export const SnapshotRecord = z.object({
  id: Id,
  vmId: Id,
  name: z.string(),
  createdAt: z.number().int(),
  quiesced: z.boolean(),
  sessionId: Id.optional(),
  disks: z.array(
    z.object({ diskId: Id, sizeBytes: z.number().int(), basePath: z.string(), deltaPath: z.string(), mapPath: z.string() }),
  ),
});
export type SnapshotRecord = z.infer<typeof SnapshotRecord>;

export const RetainedImages = z.object({
  snapshotId: Id,
  vmId: Id,
  removedAt: z.number().int(),
  images: z.array(z.object({ diskId: Id, path: z.string() })),
});
export type RetainedImages = z.infer<typeof RetainedImages>;

export const CreatedVm = z.object({
  vm: VmInfo,
  disks: z.array(z.object({ diskId: Id, path: z.string() })),
});
export type CreatedVm = z.infer<typeof CreatedVm>;

const STATE_VERSION = 1;

export const SimulatorState = z.object({
  v: z.literal(STATE_VERSION),
  type: z.literal("ferry.sim.state"),
  hypervisorId: Id,
  snapshots: z.array(SnapshotRecord),
  retained: z.array(RetainedImages),
  createdVms: z.array(CreatedVm),
});
export type SimulatorState = z.infer<typeof SimulatorState>;

export function stateFilePath(datastorePath: string, hypervisorId: string): string {
  return join(datastorePath, `ferry-sim-${hypervisorId}.state.json`);
}

export function emptyState(hypervisorId: string): SimulatorState {
  return { v: STATE_VERSION, type: "ferry.sim.state", hypervisorId, snapshots: [], retained: [], createdVms: [] };
}

/** Reads the state file; a missing file is an empty state, an unreadable or foreign one an error. */
export async function loadState(path: string, hypervisorId: string): Promise<SimulatorState> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return emptyState(hypervisorId);
    throw FerryError.from(err, ErrorCode.Io);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new FerryError(ErrorCode.Corrupt, `simulator state ${path} is not JSON: ${(err as Error).message}`, { retryable: false });
  }
  const version = (raw as { v?: unknown } | null)?.v;
  if (version !== STATE_VERSION) {
    throw new FerryError(ErrorCode.UnsupportedVersion, `simulator state ${path} has version ${String(version)}; this simulator reads ${STATE_VERSION}`, {
      retryable: false,
    });
  }
  const parsed = SimulatorState.safeParse(raw);
  if (!parsed.success) throw new FerryError(ErrorCode.Corrupt, `simulator state ${path} is invalid: ${parsed.error.message}`, { retryable: false });
  if (parsed.data.hypervisorId !== hypervisorId) {
    throw new FerryError(ErrorCode.Conflict, `simulator state ${path} belongs to hypervisor ${parsed.data.hypervisorId}, not ${hypervisorId}`, {
      retryable: false,
    });
  }
  return parsed.data;
}

/** Writes the state file atomically (temp file, fsync, rename); concurrent saves are serialized. */
export class StateFile {
  private readonly lock = new Mutex();

  constructor(readonly path: string) {}

  save(state: SimulatorState): Promise<void> {
    const text = `${JSON.stringify(state, null, 2)}\n`;
    return this.lock.run(async () => {
      const tmp = `${this.path}.tmp-${process.pid}`;
      const file = await open(tmp, "w", 0o644);
      try {
        await file.writeFile(text);
        await file.datasync();
      } finally {
        await file.close();
      }
      await rename(tmp, this.path);
    });
  }
}
