import { randomInt } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { mkdir, open, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { newId } from "../../lib/ids.js";
import type { Logger } from "../../lib/log.js";
import {
  ErrorCode,
  FerryError,
  type BodyIn,
  type DiskInfo,
  type DiskTransport,
  type Inventory,
  type Msg,
  type SimStatusResponse,
  type SnapshotInfo,
  type VmCreateRequest,
  type VmInfo,
} from "../../protocol/mod.js";
import type { DiskConfig, SimulatorConfig, VmConfig } from "../config.js";
import { DEFAULT_CONTENT_BLOCK_SIZE, generateDiskImage, matchesGeneratedImage } from "../content.js";
import { withLocks } from "../mutex.js";
import { RateWriter } from "../rate-writer.js";
import { formatSize } from "../size.js";
import { SimDisk } from "./disk.js";
import { StateFile, loadState, stateFilePath, type CreatedVm, type RetainedImages, type SimulatorState, type SnapshotRecord } from "./state.js";

interface SimVm {
  info: VmInfo;
  disks: SimDisk[];
  snapshot?: SnapshotRecord;
  /** A snapshot create or remove is running: a second one is refused, not queued. */
  busy: boolean;
  workload?: RateWriter;
  bytesWritten: number;
  bytesWrittenDuringSnapshot: number;
  /** Made by `vm.create` (kept in the state file), as opposed to the config file. */
  created: boolean;
}

type SimStatus = BodyIn<typeof SimStatusResponse>;

/**
 * The hypervisor: inventory, disks as raw sparse files, VMware-like snapshots, new VMs, workload
 * writers. No bus code here: `service.ts` maps the hypervisor API onto these methods, and tests can
 * drive them directly.
 */
export class SimHypervisor {
  private readonly vms = new Map<string, SimVm>();
  private retained: RetainedImages[];
  private closed = false;

  private constructor(
    readonly config: SimulatorConfig,
    private readonly log: Logger,
    private readonly stateFile: StateFile,
    state: SimulatorState,
  ) {
    this.retained = state.retained;
  }

  get hypervisorId(): string {
    return this.config.hypervisorId;
  }

  /**
   * Prepares every datastore and disk (generating missing images, logging progress), re-attaches
   * the snapshots a previous run left, and starts the configured workloads.
   */
  static async open(config: SimulatorConfig, log: Logger): Promise<SimHypervisor> {
    for (const ds of config.datastores) await mkdir(ds.path, { recursive: true });
    const statePath = stateFilePath(config.datastores[0]!.path, config.hypervisorId);
    const state = await loadState(statePath, config.hypervisorId);
    const hv = new SimHypervisor(config, log, new StateFile(statePath), state);
    try {
      const snapshotsByVm = new Map(state.snapshots.map((s) => [s.vmId, s]));
      for (const vmConfig of config.vms) {
        await hv.addConfiguredVm(vmConfig, snapshotsByVm.get(vmConfig.id));
      }
      for (const created of state.createdVms) {
        if (!hv.vms.has(created.vm.id)) await hv.addCreatedVm(created, snapshotsByVm.get(created.vm.id));
      }
      for (const snapshot of state.snapshots) {
        if (!hv.vms.has(snapshot.vmId)) log.warn({ vmId: snapshot.vmId, snapshotId: snapshot.id }, "state names a snapshot of a VM that no longer exists; ignored");
        else log.info({ vmId: snapshot.vmId, snapshotId: snapshot.id }, "snapshot from a previous run re-attached");
      }
      for (const vmConfig of config.vms) {
        if (vmConfig.workload && vmConfig.workload.bytesPerSec > 0) hv.setWorkload(vmConfig.id, vmConfig.workload.bytesPerSec, vmConfig.workload.ioSizeBytes);
      }
    } catch (err) {
      await hv.close();
      throw err;
    }
    return hv;
  }

  private datastore(datastoreId: string | undefined) {
    const ds = datastoreId === undefined ? this.config.datastores[0] : this.config.datastores.find((d) => d.id === datastoreId);
    if (!ds) throw new FerryError(ErrorCode.NotFound, `datastore ${datastoreId} does not exist on hypervisor ${this.hypervisorId}`);
    return ds;
  }

  /** `<datastore>/<vmId>/<diskId>.raw` */
  private diskPath(vmId: string, diskId: string, datastoreId: string): string {
    return join(this.datastore(datastoreId).path, vmId, `${diskId}.raw`);
  }

  private async openDisk(vmId: string, diskId: string, path: string, sizeBytes: number, readOnly: boolean, snapshot: SnapshotRecord | undefined) {
    const delta = snapshot?.disks.find((d) => d.diskId === diskId);
    const disk = await SimDisk.open({ vmId, id: diskId, path, sizeBytes, readOnly, frozen: delta !== undefined });
    if (delta && snapshot) await disk.attachDelta({ snapshotId: snapshot.id, deltaPath: delta.deltaPath, mapPath: delta.mapPath });
    return disk;
  }

  private addVm(info: VmInfo, disks: SimDisk[], created: boolean, snapshot?: SnapshotRecord): void {
    this.vms.set(info.id, { info, disks, snapshot, busy: false, bytesWritten: 0, bytesWrittenDuringSnapshot: 0, created });
  }

  /** A VM made by `vm.create` in an earlier run, as the state file recorded it. */
  private async addCreatedVm(created: CreatedVm, snapshot: SnapshotRecord | undefined): Promise<void> {
    const disks: SimDisk[] = [];
    for (const [i, disk] of created.vm.disks.entries()) {
      const path = created.disks[i]?.path ?? this.diskPath(created.vm.id, disk.id, disk.datastoreId);
      // A base that a snapshot holds must stay as it is; others are recreated if they went missing.
      if (!snapshot?.disks.some((d) => d.diskId === disk.id)) await ensureEmptyDisk(path, disk.sizeBytes, false);
      disks.push(await this.openDisk(created.vm.id, disk.id, path, disk.sizeBytes, false, snapshot));
    }
    this.addVm(created.vm, disks, true, snapshot);
  }

  private async addConfiguredVm(vmConfig: VmConfig, snapshot: SnapshotRecord | undefined): Promise<void> {
    const disks: SimDisk[] = [];
    const infos: DiskInfo[] = [];
    for (const [index, diskConfig] of vmConfig.disks.entries()) {
      const datastoreId = this.datastore(diskConfig.datastoreId).id;
      const frozen = snapshot?.disks.some((d) => d.diskId === diskConfig.id) ?? false;
      const { path, sizeBytes, readOnly } = await this.prepareDisk(vmConfig.id, diskConfig, datastoreId, frozen);
      disks.push(await this.openDisk(vmConfig.id, diskConfig.id, path, sizeBytes, readOnly, snapshot));
      infos.push({ id: diskConfig.id, label: diskConfig.label ?? `Hard disk ${index + 1}`, sizeBytes, datastoreId });
    }
    const info: VmInfo = {
      id: vmConfig.id,
      name: vmConfig.name ?? vmConfig.id,
      hostId: vmConfig.hostId ?? this.config.hosts[0]!.id,
      powerState: vmConfig.powerState,
      guestOs: vmConfig.guestOs,
      tags: vmConfig.tags,
      guestAgent: vmConfig.guest !== undefined,
      disks: infos,
    };
    this.addVm(info, disks, false, snapshot);
  }

  /** Makes sure the disk's file exists with the configured content; returns where it is. */
  private async prepareDisk(vmId: string, disk: DiskConfig, datastoreId: string, frozen: boolean) {
    const content = disk.content;
    if (content.kind === "image") {
      const info = await stat(content.path).catch((err: unknown) => {
        throw new FerryError(ErrorCode.NotFound, `image of disk ${disk.id} of VM ${vmId} is not readable: ${(err as Error).message}`, { retryable: false });
      });
      if (!info.isFile()) throw new FerryError(ErrorCode.BadRequest, `image ${content.path} of disk ${disk.id} of VM ${vmId} is not a file`, { retryable: false });
      if (disk.sizeBytes !== undefined && disk.sizeBytes !== info.size) {
        throw new FerryError(ErrorCode.BadRequest, `disk ${disk.id} of VM ${vmId}: sizeBytes ${disk.sizeBytes} differs from image ${content.path} (${info.size} bytes)`, {
          retryable: false,
        });
      }
      return { path: content.path, sizeBytes: info.size, readOnly: true };
    }
    const sizeBytes = disk.sizeBytes!;
    const path = this.diskPath(vmId, disk.id, datastoreId);
    await mkdir(dirname(path), { recursive: true });
    if (frozen) {
      // A snapshot holds this base: it must stay exactly as it is.
      await stat(path).catch(() => {
        throw new FerryError(ErrorCode.NotFound, `disk ${path} of VM ${vmId} is missing although snapshot state refers to it`, { retryable: false });
      });
      return { path, sizeBytes, readOnly: false };
    }
    if (content.kind === "empty") {
      await ensureEmptyDisk(path, sizeBytes, true);
      return { path, sizeBytes, readOnly: false };
    }
    const spec = { seed: content.seed, zeroPct: content.zeroPct, compressiblePct: content.compressiblePct, randomPct: content.randomPct };
    if (await matchesGeneratedImage(path, sizeBytes, spec)) {
      // The file is this VM's disk from an earlier run (possibly written to since): keep it.
      return { path, sizeBytes, readOnly: false };
    }
    this.log.info({ vmId, diskId: disk.id, path, size: formatSize(sizeBytes), ...spec }, "generating disk image");
    let lastLog = performance.now();
    const result = await generateDiskImage(path, sizeBytes, spec, DEFAULT_CONTENT_BLOCK_SIZE, {
      onProgress: (done, total) => {
        if (performance.now() - lastLog < 2_000) return;
        lastLog = performance.now();
        this.log.info({ vmId, diskId: disk.id, done: formatSize(done), total: formatSize(total), pct: Math.round((done / total) * 100) }, "generating disk image");
      },
    });
    this.log.info(
      {
        vmId,
        diskId: disk.id,
        written: formatSize(result.writtenBytes),
        elapsedMs: Math.round(result.elapsedMs),
        mibPerSec: Math.round(sizeBytes / 1024 / 1024 / (result.elapsedMs / 1000)),
      },
      "disk image generated",
    );
    return { path, sizeBytes, readOnly: false };
  }

  private vm(vmId: string): SimVm {
    const vm = this.vms.get(vmId);
    if (!vm) throw new FerryError(ErrorCode.NotFound, `VM ${vmId} does not exist on hypervisor ${this.hypervisorId}`);
    return vm;
  }

  private disk(vm: SimVm, diskId: string): SimDisk {
    const disk = vm.disks.find((d) => d.id === diskId);
    if (!disk) throw new FerryError(ErrorCode.NotFound, `disk ${diskId} of VM ${vm.info.id} does not exist`);
    return disk;
  }

  private async persist(): Promise<void> {
    const state: SimulatorState = {
      v: 1,
      type: "ferry.sim.state",
      hypervisorId: this.hypervisorId,
      snapshots: [...this.vms.values()].flatMap((vm) => (vm.snapshot ? [vm.snapshot] : [])),
      retained: this.retained,
      createdVms: [...this.vms.values()].filter((vm) => vm.created).map((vm) => ({
        vm: vm.info,
        disks: vm.disks.map((d) => ({ diskId: d.id, path: d.path })),
      })),
    };
    await this.stateFile.save(state);
  }

  async inventory(): Promise<Inventory> {
    const used = new Map<string, number>();
    for (const vm of this.vms.values()) {
      for (const [i, disk] of vm.disks.entries()) {
        const datastoreId = vm.info.disks[i]!.datastoreId;
        let bytes = 0;
        // Attached images live outside the datastore; only the files it holds count.
        if (!disk.readOnly) bytes += await allocatedBytes(disk.path);
        if (disk.deltaPath) bytes += await allocatedBytes(disk.deltaPath);
        used.set(datastoreId, (used.get(datastoreId) ?? 0) + bytes);
      }
    }
    return {
      hypervisorId: this.hypervisorId,
      hosts: this.config.hosts.map((h) => ({ id: h.id, name: h.name ?? h.id, datastores: h.datastores ?? this.config.datastores.map((d) => d.id) })),
      datastores: this.config.datastores.map((d) => ({
        id: d.id,
        name: d.name ?? d.id,
        capacityBytes: d.capacityBytes,
        freeBytes: Math.max(0, d.capacityBytes - (used.get(d.id) ?? 0)),
      })),
      vms: [...this.vms.values()].map((vm) => structuredClone(vm.info)),
    };
  }

  private snapshotInfo(vm: SimVm, record: SnapshotRecord): SnapshotInfo & { sessionId?: string } {
    return {
      id: record.id,
      vmId: record.vmId,
      name: record.name,
      createdAt: record.createdAt,
      quiesced: record.quiesced,
      disks: vm.disks.map((disk) => ({ diskId: disk.id, sizeBytes: disk.sizeBytes, transport: { mode: "file", path: disk.path } as DiskTransport })),
      ...(record.sessionId === undefined ? {} : { sessionId: record.sessionId }),
    };
  }

  /**
   * Takes a point-in-time snapshot of every disk of the VM: the base files freeze (movers read them
   * through the returned `file` transports) and later writes go to deltas. One snapshot per VM.
   */
  async createSnapshot(req: { vmId: string; name: string; quiesced: boolean; sessionId?: string }): Promise<SnapshotInfo> {
    const vm = this.vm(req.vmId);
    if (vm.snapshot || vm.busy) {
      throw new FerryError(ErrorCode.Conflict, `VM ${req.vmId} already has snapshot ${vm.snapshot?.id ?? "(being changed)"}; remove it first`);
    }
    vm.busy = true;
    try {
      const snapshotId = newId("snap");
      const record: SnapshotRecord = {
        id: snapshotId,
        vmId: req.vmId,
        name: req.name,
        createdAt: Date.now(),
        quiesced: req.quiesced,
        ...(req.sessionId === undefined ? {} : { sessionId: req.sessionId }),
        disks: vm.disks.map((disk, i) => {
          const dir = join(this.datastore(vm.info.disks[i]!.datastoreId).path, vm.info.id);
          return {
            diskId: disk.id,
            sizeBytes: disk.sizeBytes,
            basePath: disk.path,
            deltaPath: join(dir, `${disk.id}.delta-${snapshotId}.raw`),
            mapPath: join(dir, `${disk.id}.delta-${snapshotId}.map`),
          };
        }),
      };
      await withLocks(
        vm.disks.map((d) => d.lock),
        async () => {
          const frozen: SimDisk[] = [];
          try {
            for (const [i, disk] of vm.disks.entries()) {
              const files = record.disks[i]!;
              await mkdir(dirname(files.deltaPath), { recursive: true });
              await disk.freezeLocked({ snapshotId, deltaPath: files.deltaPath, mapPath: files.mapPath });
              frozen.push(disk);
            }
            vm.snapshot = record;
            await this.persist();
          } catch (err) {
            // Undo: an empty delta commits to nothing, and the bases become writable again.
            vm.snapshot = undefined;
            for (const disk of frozen) await disk.commitLocked().catch(() => undefined);
            throw err;
          }
        },
      );
      this.log.info({ vmId: req.vmId, snapshotId, sessionId: req.sessionId, quiesced: req.quiesced }, "snapshot created");
      return this.snapshotInfo(vm, record);
    } finally {
      vm.busy = false;
    }
  }

  /**
   * Commits the snapshot: each delta is merged into its base, the base is fsynced and the delta
   * deleted. With `retainSnapshotImages`, the snapshot-time content is kept first.
   */
  async removeSnapshot(req: { vmId: string; snapshotId: string }): Promise<{ mergedBytes: number }> {
    const vm = this.vm(req.vmId);
    if (vm.snapshot?.id !== req.snapshotId) {
      if (vm.busy) throw new FerryError(ErrorCode.Conflict, `a snapshot operation on VM ${req.vmId} is in progress`);
      throw new FerryError(ErrorCode.NotFound, `snapshot ${req.snapshotId} of VM ${req.vmId} does not exist`);
    }
    if (vm.busy) throw new FerryError(ErrorCode.Conflict, `snapshot ${req.snapshotId} of VM ${req.vmId} is being changed`);
    vm.busy = true;
    try {
      const snapshot = vm.snapshot;
      let mergedBytes = 0;
      const images: RetainedImages["images"] = [];
      await withLocks(
        vm.disks.map((d) => d.lock),
        async () => {
          for (const [i, disk] of vm.disks.entries()) {
            const retainPath = this.config.retainSnapshotImages
              ? join(dirname(snapshot.disks[i]!.deltaPath), `${disk.id}.snap-${snapshot.id}.raw`)
              : undefined;
            const result = await disk.commitLocked(retainPath === undefined ? {} : { retainPath });
            mergedBytes += result.mergedBytes;
            if (result.retainedPath) images.push({ diskId: disk.id, path: result.retainedPath });
          }
          vm.snapshot = undefined;
          if (this.config.retainSnapshotImages) this.retained.push({ snapshotId: snapshot.id, vmId: vm.info.id, removedAt: Date.now(), images });
          await this.persist();
        },
      );
      this.log.info({ vmId: req.vmId, snapshotId: req.snapshotId, mergedBytes }, "snapshot removed (delta committed)");
      return { mergedBytes };
    } finally {
      vm.busy = false;
    }
  }

  listSnapshots(vmId?: string): Array<SnapshotInfo & { sessionId?: string }> {
    const vms = vmId === undefined ? [...this.vms.values()] : [this.vm(vmId)];
    return vms.flatMap((vm) => (vm.snapshot ? [this.snapshotInfo(vm, vm.snapshot)] : []));
  }

  /** Files holding each disk's content as of the snapshot: the frozen bases while it exists, the retained copies after. */
  snapshotImages(vmId: string, snapshotId: string): Array<{ diskId: string; path: string }> {
    const vm = this.vm(vmId);
    if (vm.snapshot?.id === snapshotId) return vm.disks.map((d) => ({ diskId: d.id, path: d.path }));
    const kept = this.retained.find((r) => r.vmId === vmId && r.snapshotId === snapshotId);
    if (kept) return kept.images;
    throw new FerryError(
      ErrorCode.NotFound,
      `no images of snapshot ${snapshotId} of VM ${vmId}${this.config.retainSnapshotImages ? "" : " (retainSnapshotImages is off)"}`,
    );
  }

  /** A new, powered-off VM with empty sparse disks, and writable transports to them (restore target). */
  async createVm(req: Omit<Msg<typeof VmCreateRequest>, "v" | "type">): Promise<{ vm: VmInfo; disks: Array<{ diskId: string; transport: DiskTransport }> }> {
    const hostId = req.hostId ?? this.config.hosts[0]!.id;
    if (!this.config.hosts.some((h) => h.id === hostId)) throw new FerryError(ErrorCode.NotFound, `host ${hostId} does not exist on hypervisor ${this.hypervisorId}`);
    const ds = this.datastore(req.datastoreId);
    const vmId = newId("vm");
    const infos: DiskInfo[] = req.disks.map((d, i) => ({ id: `disk-${i + 1}`, label: d.label, sizeBytes: d.sizeBytes, datastoreId: ds.id }));
    const disks: SimDisk[] = [];
    try {
      for (const info of infos) {
        const path = this.diskPath(vmId, info.id, ds.id);
        await mkdir(dirname(path), { recursive: true });
        await ensureEmptyDisk(path, info.sizeBytes, false);
        disks.push(await SimDisk.open({ vmId, id: info.id, path, sizeBytes: info.sizeBytes, readOnly: false }));
      }
    } catch (err) {
      for (const disk of disks) await disk.close();
      throw FerryError.from(err, ErrorCode.Io);
    }
    const info: VmInfo = {
      id: vmId,
      name: req.name,
      hostId,
      powerState: "poweredOff",
      guestOs: req.guestOs,
      tags: req.tags,
      guestAgent: false,
      disks: infos,
    };
    this.addVm(info, disks, true);
    await this.persist();
    this.log.info({ vmId, name: req.name, disks: infos.length }, "VM created");
    return { vm: structuredClone(info), disks: disks.map((d) => ({ diskId: d.id, transport: { mode: "file", path: d.path } })) };
  }

  /** Writes to a VM's disk through the snapshot semantics, counting the bytes for `status`. */
  async write(vmId: string, diskId: string, offset: number, data: Uint8Array): Promise<void> {
    const vm = this.vm(vmId);
    const { toDelta } = await this.disk(vm, diskId).write(offset, data);
    vm.bytesWritten += data.length;
    if (toDelta) vm.bytesWrittenDuringSnapshot += data.length;
  }

  /** What the guest reads: delta over base while a snapshot exists. */
  async read(vmId: string, diskId: string, offset: number, length: number): Promise<Buffer> {
    return this.disk(this.vm(vmId), diskId).read(offset, length);
  }

  /** Writes `data` at a random offset aligned to its length on the given disk (default: a random writable one). */
  async writeAtRandom(vmId: string, data: Uint8Array, diskId?: string): Promise<void> {
    const vm = this.vm(vmId);
    const candidates = diskId === undefined ? vm.disks.filter((d) => !d.readOnly) : vm.disks.filter((d) => d.id === diskId);
    const disk = candidates[candidates.length === 1 ? 0 : randomInt(candidates.length)];
    if (!disk) throw new FerryError(ErrorCode.Conflict, `VM ${vmId} has no writable disk${diskId === undefined ? "" : ` ${diskId}`}`, { retryable: false });
    const slots = Math.floor(disk.sizeBytes / data.length);
    if (slots === 0) {
      await this.write(vmId, disk.id, 0, data.subarray(0, disk.sizeBytes));
      return;
    }
    await this.write(vmId, disk.id, randomInt(slots) * data.length, data);
  }

  /** Starts, changes or (with 0) stops the VM's background writer. */
  setWorkload(vmId: string, bytesPerSec: number, ioSizeBytes: number): { vmId: string; bytesPerSec: number } {
    const vm = this.vm(vmId);
    if (this.closed) throw new FerryError(ErrorCode.Unavailable, `hypervisor ${this.hypervisorId} is stopping`);
    if (bytesPerSec > 0 && vm.disks.every((d) => d.readOnly)) {
      throw new FerryError(ErrorCode.Conflict, `VM ${vmId} has only read-only image disks; a workload cannot write to them`, { retryable: false });
    }
    if (vm.workload) {
      vm.workload.setRate(bytesPerSec, ioSizeBytes);
    } else if (bytesPerSec > 0) {
      vm.workload = new RateWriter({
        name: `workload ${vmId}`,
        bytesPerSec,
        ioSizeBytes,
        log: this.log,
        write: (data) => this.writeAtRandom(vmId, data),
      });
    }
    this.log.info({ vmId, bytesPerSec, ioSizeBytes }, "workload set");
    return { vmId, bytesPerSec };
  }

  status(): SimStatus {
    return {
      vms: [...this.vms.values()].map((vm) => ({
        vmId: vm.info.id,
        ...(vm.snapshot ? { snapshotId: vm.snapshot.id } : {}),
        workloadBytesPerSec: vm.workload?.rate.bytesPerSec ?? 0,
        bytesWritten: vm.bytesWritten,
        bytesWrittenDuringSnapshot: vm.bytesWrittenDuringSnapshot,
      })),
    };
  }

  /** Stops the workloads and closes the disks; snapshots stay (their state is on disk). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.vms.values()].map((vm) => vm.workload?.stop()));
    for (const vm of this.vms.values()) for (const disk of vm.disks) await disk.close();
  }
}

async function allocatedBytes(path: string): Promise<number> {
  try {
    return (await stat(path)).blocks * 512;
  } catch {
    return 0;
  }
}

/** Creates a sparse file of `sizeBytes` if missing; with `resize`, an existing file is set to that size. */
async function ensureEmptyDisk(path: string, sizeBytes: number, resize: boolean): Promise<void> {
  const file = await open(path, fsConstants.O_CREAT | fsConstants.O_RDWR, 0o644);
  try {
    const { size } = await file.stat();
    if (size === 0 || (resize && size !== sizeBytes)) await file.truncate(sizeBytes);
  } finally {
    await file.close();
  }
}
