import { constants as fsConstants } from "node:fs";
import { chmod, open, readFile, unlink, type FileHandle } from "node:fs/promises";
import { ErrorCode, FerryError } from "../../protocol/mod.js";
import { Mutex } from "../mutex.js";
import { copySparse, readFully, writeFully } from "./files.js";

/** Granularity of the snapshot delta: a write touching part of a chunk copies the whole chunk first. */
export const DELTA_CHUNK_BYTES = 64 * 1024;

/** Where one disk's snapshot delta lives: the sparse delta file and the list of chunks it holds. */
export interface DeltaFiles {
  snapshotId: string;
  deltaPath: string;
  /** Little-endian u32 chunk indexes, appended as chunks enter the delta (survives a restart). */
  mapPath: string;
}

interface Delta {
  files: DeltaFiles;
  data: FileHandle;
  map: FileHandle;
  chunks: Set<number>;
}

/**
 * One virtual disk: a raw sparse base file, plus a delta while a snapshot exists.
 *
 * Rules: while a snapshot exists the base file is never written (movers read it directly); every
 * write goes to the delta and reads see delta-over-base. Writes, reads and the snapshot operations
 * are serialized by `lock`, so no write is half in the base and half in the delta. A read-only disk
 * (an attached image) refuses writes and its file is never opened for writing.
 */
export class SimDisk {
  /** Held by every write and read, and by snapshot create/remove across all of a VM's disks. */
  readonly lock = new Mutex();
  private delta?: Delta;

  private constructor(
    readonly vmId: string,
    readonly id: string,
    readonly path: string,
    readonly sizeBytes: number,
    readonly readOnly: boolean,
    private base: FileHandle,
    private baseWritable: boolean,
  ) {}

  /** Opens an existing base file; `frozen` when a recorded snapshot still holds it (opened read-only). */
  static async open(opts: { vmId: string; id: string; path: string; sizeBytes: number; readOnly: boolean; frozen?: boolean }): Promise<SimDisk> {
    const writable = !opts.readOnly && !opts.frozen;
    const base = await open(opts.path, writable ? "r+" : "r");
    return new SimDisk(opts.vmId, opts.id, opts.path, opts.sizeBytes, opts.readOnly, base, writable);
  }

  get deltaPath(): string | undefined {
    return this.delta?.files.deltaPath;
  }

  private chunkLength(chunk: number): number {
    return Math.min(DELTA_CHUNK_BYTES, this.sizeBytes - chunk * DELTA_CHUNK_BYTES);
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.sizeBytes) {
      throw new FerryError(ErrorCode.BadRequest, `range ${offset}+${length} is outside disk ${this.id} of VM ${this.vmId} (${this.sizeBytes} bytes)`);
    }
  }

  /** Re-attaches the delta of a snapshot recorded before a restart. Call before any I/O. */
  async attachDelta(files: DeltaFiles): Promise<void> {
    const data = await open(files.deltaPath, fsConstants.O_CREAT | fsConstants.O_RDWR, 0o644);
    await data.truncate(this.sizeBytes);
    const map = await open(files.mapPath, fsConstants.O_CREAT | fsConstants.O_RDWR | fsConstants.O_APPEND, 0o644);
    const raw = await readFile(files.mapPath);
    const chunks = new Set<number>();
    // A torn last entry (crash mid-append) is ignored: its write had not completed.
    for (let i = 0; i + 4 <= raw.length; i += 4) chunks.add(raw.readUInt32LE(i));
    this.delta = { files, data, map, chunks };
  }

  /** Writes through the snapshot semantics; tells whether the bytes went to a delta. */
  async write(offset: number, data: Uint8Array): Promise<{ toDelta: boolean }> {
    if (this.readOnly) {
      throw new FerryError(ErrorCode.Conflict, `disk ${this.id} of VM ${this.vmId} is a read-only image`, { retryable: false });
    }
    this.checkRange(offset, data.length);
    return this.lock.run(async () => {
      const delta = this.delta;
      if (!delta) {
        if (!this.baseWritable) throw new FerryError(ErrorCode.Internal, `base of disk ${this.id} is not open for writing`);
        await writeFully(this.base, data, offset);
        return { toDelta: false };
      }
      const added: number[] = [];
      const end = offset + data.length;
      for (let chunk = Math.floor(offset / DELTA_CHUNK_BYTES); chunk * DELTA_CHUNK_BYTES < end; chunk++) {
        const chunkStart = chunk * DELTA_CHUNK_BYTES;
        const chunkEnd = chunkStart + this.chunkLength(chunk);
        const from = Math.max(offset, chunkStart);
        const to = Math.min(end, chunkEnd);
        const part = data.subarray(from - offset, to - offset);
        if (!delta.chunks.has(chunk) && (from > chunkStart || to < chunkEnd)) {
          // First write to this chunk covers only part of it: the rest must come from the base.
          const whole = await readFully(this.base, chunkStart, chunkEnd - chunkStart);
          whole.set(part, from - chunkStart);
          await writeFully(delta.data, whole, chunkStart);
        } else {
          await writeFully(delta.data, part, from);
        }
        if (!delta.chunks.has(chunk)) {
          delta.chunks.add(chunk);
          added.push(chunk);
        }
      }
      if (added.length > 0) {
        const entries = Buffer.alloc(added.length * 4);
        added.forEach((chunk, i) => entries.writeUInt32LE(chunk, i * 4));
        await delta.map.write(entries, 0, entries.length, null);
      }
      return { toDelta: true };
    });
  }

  /** Reads what the guest sees: the delta's chunks over the base. */
  async read(offset: number, length: number): Promise<Buffer> {
    this.checkRange(offset, length);
    return this.lock.run(async () => {
      const delta = this.delta;
      if (!delta || delta.chunks.size === 0) return readFully(this.base, offset, length);
      const out = Buffer.alloc(length);
      const end = offset + length;
      for (let chunk = Math.floor(offset / DELTA_CHUNK_BYTES); chunk * DELTA_CHUNK_BYTES < end; chunk++) {
        const from = Math.max(offset, chunk * DELTA_CHUNK_BYTES);
        const to = Math.min(end, chunk * DELTA_CHUNK_BYTES + this.chunkLength(chunk));
        await readFully(delta.chunks.has(chunk) ? delta.data : this.base, from, to - from, out.subarray(from - offset, to - offset));
      }
      return out;
    });
  }

  /**
   * Freezes the base and starts a delta. The caller holds `lock` (with the locks of the VM's other
   * disks, so the snapshot is one point in time for the whole VM).
   */
  async freezeLocked(files: DeltaFiles): Promise<void> {
    if (this.delta) throw new FerryError(ErrorCode.Conflict, `disk ${this.id} of VM ${this.vmId} already has snapshot ${this.delta.files.snapshotId}`);
    const data = await open(files.deltaPath, fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_RDWR, 0o644);
    try {
      await data.truncate(this.sizeBytes);
      const map = await open(files.mapPath, fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_RDWR | fsConstants.O_APPEND, 0o644);
      // Pending writes are in the base file already (each write completed under the lock); make them durable
      // so the frozen base is what a mover reads. Read-only marks the frozen base for anyone looking.
      if (this.baseWritable) await this.base.datasync();
      if (!this.readOnly) await chmod(this.path, 0o444);
      this.delta = { files, data, map, chunks: new Set() };
    } catch (err) {
      await data.close().catch(() => undefined);
      await unlink(files.deltaPath).catch(() => undefined);
      await unlink(files.mapPath).catch(() => undefined);
      throw FerryError.from(err, ErrorCode.Io);
    }
  }

  /**
   * Commits the delta into the base (the caller holds `lock`): optionally keeps a copy of the
   * snapshot-time content first, merges the delta's chunks, fsyncs the base, deletes the delta.
   * Returns the merged bytes and the path that holds the snapshot-time content, if asked to keep it.
   */
  async commitLocked(opts: { retainPath?: string } = {}): Promise<{ mergedBytes: number; retainedPath?: string }> {
    const delta = this.delta;
    if (!delta) return { mergedBytes: 0 };
    const chunks = [...delta.chunks].sort((a, b) => a - b);
    let retainedPath: string | undefined;
    if (opts.retainPath !== undefined) {
      // An empty delta means the base still is the snapshot-time content.
      if (chunks.length > 0) {
        await copySparse(this.path, opts.retainPath);
        retainedPath = opts.retainPath;
      } else {
        retainedPath = this.path;
      }
    }
    let mergedBytes = 0;
    if (chunks.length > 0) {
      if (this.readOnly) throw new FerryError(ErrorCode.Internal, `read-only disk ${this.id} has a non-empty delta`);
      await this.makeBaseWritable();
      const buf = Buffer.alloc(DELTA_CHUNK_BYTES);
      for (const chunk of chunks) {
        const length = this.chunkLength(chunk);
        const data = await readFully(delta.data, chunk * DELTA_CHUNK_BYTES, length, buf);
        await writeFully(this.base, data.subarray(0, length), chunk * DELTA_CHUNK_BYTES);
        mergedBytes += length;
      }
      await this.base.datasync();
    } else if (!this.readOnly) {
      await this.makeBaseWritable();
    }
    await delta.data.close();
    await delta.map.close();
    await unlink(delta.files.deltaPath).catch(() => undefined);
    await unlink(delta.files.mapPath).catch(() => undefined);
    this.delta = undefined;
    return { mergedBytes, ...(retainedPath === undefined ? {} : { retainedPath }) };
  }

  private async makeBaseWritable(): Promise<void> {
    await chmod(this.path, 0o644);
    if (!this.baseWritable) {
      await this.base.close();
      this.base = await open(this.path, "r+");
      this.baseWritable = true;
    }
  }

  /** Closes the files; a delta stays on disk (the snapshot survives a restart). */
  async close(): Promise<void> {
    await this.lock.run(async () => {
      await this.delta?.data.close().catch(() => undefined);
      await this.delta?.map.close().catch(() => undefined);
      await this.base.close().catch(() => undefined);
    });
  }
}
