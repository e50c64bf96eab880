import { existsSync } from "node:fs";
import { mkdir, open, readdir, readFile, rename, statfs, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { ErrorCode, FerryError, RestorePoint as RestorePointSchema, describeIssues, type RestorePoint, type RestorePointDisk } from "../../../protocol/mod.js";
import { blockDigest, digestHex, payloadSum } from "../../../lib/block-codec.js";
import { fsyncDir, writeFileDurable } from "./durable.js";
import {
  BLOCK_ENTRY_HEADER_BYTES,
  DIGEST_BYTES,
  ZERO_DIGEST,
  checkPackHeader,
  decodeBlockEntryHeader,
  decodeConfig,
  decodeManifest,
  decodePackIndex,
  decodeRestorePoint,
  encodeConfig,
  encodeManifest,
  encodeRestorePoint,
  PACK_HEADER_BYTES,
  REPOSITORY_FORMAT_VERSION,
  type BlockEntry,
  type Manifest,
  type ManifestHeader,
  type RepositoryConfigFile,
} from "./format.js";
import { PackWriter, packPaths } from "./pack-writer.js";

const DEFAULT_PACK_MAX_BYTES = 512 * 1024 * 1024;
const MAX_OPEN_PACK_READERS = 64;

interface BlockLocation {
  packId: string;
  offset: number;
  rawLen: number;
  storedLen: number;
  codec: BlockEntry["codec"];
  sum: string;
  /** Set while the block's pack is not sealed yet. */
  writer?: PackWriter;
}

export interface StoredBlock {
  entry: BlockEntry;
  stored: Buffer;
}

export interface AppendResult {
  /** The repository already held the block; nothing was written. */
  deduped: boolean;
  /** The pack the block lives in while it is not durable yet; undefined when already sealed. */
  writer?: PackWriter;
  written: Promise<void>;
}

/**
 * A repository on a local file system (docs/repository-format.md): content-addressed blocks in
 * append-only packs, a manifest per disk per restore point, restore points made visible by a
 * directory rename once complete. One instance per process; it is safe for concurrent tasks.
 */
export class Repository {
  private readonly index = new Map<string, BlockLocation>();
  /** Index entries of each pack not sealed yet, to mark them durable when it is. */
  private readonly unsealed = new Map<PackWriter, Array<{ key: string; location: BlockLocation }>>();
  private current?: PackWriter;
  private readonly sealing = new Set<Promise<void>>();
  private readonly readers = new Map<string, Promise<FileHandle>>();
  private storedBytes = 0;
  private packCount = 0;

  private constructor(
    readonly path: string,
    readonly config: RepositoryConfigFile,
  ) {}

  get id(): string {
    return this.config.id;
  }
  private get packsDir(): string {
    return join(this.path, "packs");
  }
  private get stagingDir(): string {
    return join(this.path, "staging");
  }
  private get restorePointsDir(): string {
    return join(this.path, "restorepoints");
  }

  /** Opens the repository at `path`, creating it when the folder has none. */
  static async open(path: string, opts: { id: string; packMaxBytes?: number }): Promise<Repository> {
    const configPath = join(path, "config");
    let config: RepositoryConfigFile;
    if (existsSync(configPath)) {
      config = decodeConfig(await readFile(configPath));
      if (config.id !== opts.id) {
        throw new FerryError(ErrorCode.Conflict, `folder ${path} holds repository ${config.id}, not ${opts.id}`, { retryable: false });
      }
    } else {
      await mkdir(path, { recursive: true });
      config = {
        format: REPOSITORY_FORMAT_VERSION,
        id: opts.id,
        createdAt: Date.now(),
        digest: "blake3-256",
        checksum: "xxh64",
        packMaxBytes: opts.packMaxBytes ?? DEFAULT_PACK_MAX_BYTES,
      };
      for (const dir of ["packs", "staging", "restorepoints"]) await mkdir(join(path, dir), { recursive: true });
      await writeFileDurable(configPath, encodeConfig(config));
    }
    const repo = new Repository(path, config);
    await repo.loadIndex();
    return repo;
  }

  /** Reads every pack index; packs without an index are incomplete and ignored (garbage). */
  private async loadIndex(): Promise<void> {
    for (const fanout of await readdir(this.packsDir).catch(() => [] as string[])) {
      for (const name of await readdir(join(this.packsDir, fanout))) {
        if (!name.endsWith(".idx")) continue;
        const packId = name.slice(0, -4);
        const records = decodePackIndex(await readFile(join(this.packsDir, fanout, name)));
        this.packCount++;
        for (const r of records) {
          const key = digestHex(r.digest);
          if (this.index.has(key)) continue;
          this.index.set(key, { packId, offset: r.offset, rawLen: r.rawLen, storedLen: r.storedLen, codec: r.codec, sum: r.sum });
          this.storedBytes += r.storedLen;
        }
      }
    }
  }

  has(digest: Uint8Array): boolean {
    return this.index.has(digestHex(digest));
  }

  /**
   * Adds a block unless the repository holds it already. The block is durable only once the
   * returned writer is sealed (see `seal`); the payload must stay unchanged until `written`.
   */
  async appendBlock(entry: BlockEntry, payload: readonly Uint8Array[]): Promise<AppendResult> {
    const key = digestHex(entry.digest);
    for (;;) {
      const known = this.index.get(key);
      if (known && known.writer?.status !== "failed") {
        return { deduped: true, writer: known.writer, written: Promise.resolve() };
      }
      if (this.current?.status === "open") break;
      await this.openPack();
    }
    // From here to the end nothing awaits: the reservation and the index entry happen together.
    const writer = this.current!;
    const { offset, written } = writer.append(entry, payload);
    const location: BlockLocation = { packId: writer.packId, offset, rawLen: entry.rawLen, storedLen: entry.storedLen, codec: entry.codec, sum: entry.sum, writer };
    this.index.set(key, location);
    let pending = this.unsealed.get(writer);
    if (!pending) this.unsealed.set(writer, (pending = []));
    pending.push({ key, location });
    this.storedBytes += entry.storedLen;
    void written.catch(() => {
      if (this.index.get(key)?.writer === writer) this.index.delete(key);
      this.storedBytes -= entry.storedLen;
    });
    if (writer.bytes >= this.config.packMaxBytes) this.rotate();
    return { deduped: false, writer, written };
  }

  private opening?: Promise<void>;

  /** Starts a new pack; concurrent callers share one creation. */
  private openPack(): Promise<void> {
    this.opening ??= PackWriter.create(this.packsDir)
      .then((writer) => {
        this.current = writer;
        this.packCount++;
      })
      .finally(() => (this.opening = undefined));
    return this.opening;
  }

  private rotate(): void {
    const full = this.current;
    this.current = undefined;
    if (full) this.trackSeal(full);
  }

  private trackSeal(writer: PackWriter): Promise<void> {
    const sealed = writer.seal().then(
      () => this.onSealed(writer),
      (err: unknown) => {
        // Its blocks were never durable: forget them, so the next task stores them again.
        for (const { key, location } of this.unsealed.get(writer) ?? []) {
          if (this.index.get(key) === location) this.index.delete(key);
        }
        this.unsealed.delete(writer);
        throw err;
      },
    );
    this.sealing.add(sealed);
    const forget = () => this.sealing.delete(sealed);
    sealed.then(forget, forget);
    return sealed;
  }

  private onSealed(writer: PackWriter): void {
    for (const { location } of this.unsealed.get(writer) ?? []) delete location.writer;
    this.unsealed.delete(writer);
  }

  /**
   * Makes the given packs durable. The open pack is sealed (and a new one started later) when it
   * is among them, so blocks other tasks appended to it become durable too.
   */
  async seal(writers: Iterable<PackWriter>): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const writer of new Set(writers)) {
      if (writer === this.current) {
        this.current = undefined;
        waits.push(this.trackSeal(writer));
      } else if (writer.status !== "sealed") {
        waits.push(writer.seal());
      }
    }
    await Promise.all(waits);
  }

  // --- manifests and restore points ---

  private stagedManifestPath(restorePointId: string, diskId: string): string {
    return join(this.stagingDir, restorePointId, `${diskId}.manifest`);
  }

  /** Writes a disk's manifest durably into the restore point's staging folder; returns its digest. */
  async stageManifest(manifest: Manifest): Promise<string> {
    const { restorePointId, diskId } = manifest.header;
    if (existsSync(join(this.restorePointsDir, restorePointId))) {
      throw new FerryError(ErrorCode.Conflict, `restore point ${restorePointId} is already committed`, { retryable: false });
    }
    const dir = join(this.stagingDir, restorePointId);
    await mkdir(dir, { recursive: true });
    await fsyncDir(this.stagingDir);
    const data = encodeManifest(manifest);
    await writeFileDurable(this.stagedManifestPath(restorePointId, diskId), data);
    return digestHex(blockDigest(data));
  }

  /**
   * Commits a restore point: every listed disk must have a staged manifest with the given digest.
   * Writes the restore point file, then renames the staging folder into `restorepoints/` — the
   * single step that makes it visible.
   */
  async commitRestorePoint(
    restorePoint: Omit<RestorePoint, "committedAt" | "disks" | "repositoryId">,
    disks: ReadonlyArray<{ diskId: string; manifestDigest: string }>,
  ): Promise<RestorePoint> {
    const finalDir = join(this.restorePointsDir, restorePoint.id);
    if (existsSync(finalDir)) {
      const existing = await this.getRestorePoint(restorePoint.id);
      const same = disks.every((d) => existing.disks.some((e) => e.diskId === d.diskId && e.manifestDigest === d.manifestDigest));
      if (same && existing.disks.length === disks.length) return existing; // a retried commit
      throw new FerryError(ErrorCode.Conflict, `restore point ${restorePoint.id} is already committed with other disks`, { retryable: false });
    }
    const stagingDir = join(this.stagingDir, restorePoint.id);
    const rpDisks: RestorePointDisk[] = [];
    for (const disk of disks) {
      let data: Buffer;
      try {
        data = await readFile(this.stagedManifestPath(restorePoint.id, disk.diskId));
      } catch {
        throw new FerryError(ErrorCode.NotFound, `restore point ${restorePoint.id}: no staged manifest for disk ${disk.diskId}`, { retryable: false });
      }
      const digest = digestHex(blockDigest(data));
      if (digest !== disk.manifestDigest) {
        throw new FerryError(ErrorCode.Conflict, `restore point ${restorePoint.id}: manifest of disk ${disk.diskId} is ${digest}, expected ${disk.manifestDigest}`, { retryable: false });
      }
      const { header } = decodeManifest(data);
      rpDisks.push({
        diskId: disk.diskId,
        label: header.label,
        sizeBytes: header.sizeBytes,
        blockSize: header.blockSize,
        blocks: header.totalBlocks,
        zeroBlocks: header.zeroBlocks,
        manifestDigest: digest,
      });
    }
    // Validated before it is written: a restore point that could not be read back must never become visible.
    const parsed = RestorePointSchema.safeParse({ ...restorePoint, repositoryId: this.id, committedAt: Date.now(), disks: rpDisks });
    if (!parsed.success) throw new FerryError(ErrorCode.BadRequest, `restore point ${restorePoint.id} is invalid: ${describeIssues(parsed.error)}`, { retryable: false });
    const committed = parsed.data;
    await writeFileDurable(join(stagingDir, "restorepoint"), encodeRestorePoint(committed));
    await rename(stagingDir, finalDir);
    await fsyncDir(this.restorePointsDir);
    await fsyncDir(this.stagingDir);
    return committed;
  }

  async getRestorePoint(restorePointId: string): Promise<RestorePoint> {
    try {
      return decodeRestorePoint(await readFile(join(this.restorePointsDir, restorePointId, "restorepoint")));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new FerryError(ErrorCode.NotFound, `restore point ${restorePointId} not found in repository ${this.id}`, { retryable: false });
      }
      throw FerryError.from(err, ErrorCode.Corrupt);
    }
  }

  async listRestorePoints(filter: { jobId?: string; vmId?: string } = {}): Promise<RestorePoint[]> {
    const out: RestorePoint[] = [];
    for (const id of await readdir(this.restorePointsDir)) {
      const rp = await this.getRestorePoint(id).catch(() => undefined);
      if (!rp) continue;
      if (filter.jobId && rp.jobId !== filter.jobId) continue;
      if (filter.vmId && rp.vm.id !== filter.vmId) continue;
      out.push(rp);
    }
    return out.sort((a, b) => a.createdAt - b.createdAt);
  }

  async readManifest(restorePointId: string, diskId: string): Promise<Manifest> {
    const rp = await this.getRestorePoint(restorePointId);
    const disk = rp.disks.find((d) => d.diskId === diskId);
    if (!disk) throw new FerryError(ErrorCode.NotFound, `restore point ${restorePointId} has no disk ${diskId}`, { retryable: false });
    const data = await readFile(join(this.restorePointsDir, restorePointId, `${diskId}.manifest`));
    if (digestHex(blockDigest(data)) !== disk.manifestDigest) {
      throw new FerryError(ErrorCode.Corrupt, `manifest of ${restorePointId}/${diskId} does not match its restore point`);
    }
    return decodeManifest(data);
  }

  // --- reading blocks ---

  private packReader(packId: string): Promise<FileHandle> {
    let reader = this.readers.get(packId);
    if (!reader) {
      if (this.readers.size >= MAX_OPEN_PACK_READERS) {
        const [oldest] = this.readers;
        if (oldest) {
          this.readers.delete(oldest[0]);
          void oldest[1].then((h) => h.close()).catch(() => undefined);
        }
      }
      reader = (async () => {
        const handle = await open(packPaths(this.packsDir, packId).pack, "r");
        const header = Buffer.alloc(PACK_HEADER_BYTES);
        await handle.read(header, 0, PACK_HEADER_BYTES, 0);
        checkPackHeader(header);
        return handle;
      })();
      reader.catch(() => this.readers.delete(packId));
      this.readers.set(packId, reader);
    }
    return reader;
  }

  /** Reads a block's stored bytes and checks its entry header and checksum (not its digest). */
  async readBlock(digest: Uint8Array): Promise<StoredBlock> {
    const hex = digestHex(digest);
    const location = this.index.get(hex);
    if (!location || location.writer) {
      throw new FerryError(ErrorCode.NotFound, `block ${hex} is not in repository ${this.id}`, { retryable: false });
    }
    const handle = await this.packReader(location.packId);
    const buf = Buffer.allocUnsafe(BLOCK_ENTRY_HEADER_BYTES + location.storedLen);
    const { bytesRead } = await handle.read(buf, 0, buf.length, location.offset);
    if (bytesRead !== buf.length) throw new FerryError(ErrorCode.Corrupt, `block ${hex}: pack ${location.packId} is truncated`);
    const entry = decodeBlockEntryHeader(buf.subarray(0, BLOCK_ENTRY_HEADER_BYTES));
    if (!Buffer.from(entry.digest).equals(Buffer.from(digest)) || entry.storedLen !== location.storedLen) {
      throw new FerryError(ErrorCode.Corrupt, `block ${hex}: pack entry at ${location.packId}@${location.offset} is another block`);
    }
    const stored = buf.subarray(BLOCK_ENTRY_HEADER_BYTES);
    if (payloadSum(stored) !== entry.sum) throw new FerryError(ErrorCode.Corrupt, `block ${hex}: checksum mismatch in pack ${location.packId}`);
    return { entry, stored };
  }

  async info(): Promise<{ restorePoints: number; storedBlocks: number; storedBytes: number; packs: number; freeBytes: number }> {
    const stats = await statfs(this.path);
    return {
      restorePoints: (await readdir(this.restorePointsDir)).length,
      storedBlocks: this.index.size,
      storedBytes: this.storedBytes,
      packs: this.packCount,
      freeBytes: stats.bavail * stats.bsize,
    };
  }

  async close(): Promise<void> {
    const open = this.current;
    this.current = undefined;
    if (open && open.entries > 0) await this.trackSeal(open).catch(() => undefined);
    else await open?.discard();
    await Promise.allSettled([...this.sealing]);
    for (const reader of this.readers.values()) await reader.then((h) => h.close()).catch(() => undefined);
    this.readers.clear();
  }
}

export { ZERO_DIGEST, DIGEST_BYTES, type ManifestHeader };
