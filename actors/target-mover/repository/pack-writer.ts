import { mkdir, open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { ErrorCode, FerryError } from "../../../protocol/mod.js";
import { fsyncDir, writeFileDurable } from "./durable.js";
import { BLOCK_ENTRY_HEADER_BYTES, PACK_HEADER_BYTES, encodeBlockEntryHeader, encodePackHeader, encodePackIndex, type BlockEntry, type IndexRecord } from "./format.js";

/** Written data is flushed in the background every this many bytes, so sealing a pack is quick. */
const BACKGROUND_SYNC_BYTES = 64 * 1024 * 1024;

export type PackState = "open" | "sealing" | "sealed" | "failed";

export function packPaths(packsDir: string, packId: string): { dir: string; pack: string; index: string } {
  const dir = join(packsDir, packId.slice(0, 2));
  return { dir, pack: join(dir, `${packId}.pack`), index: join(dir, `${packId}.idx`) };
}

/**
 * One pack file being appended to. Appends are positional writes issued in any number at once;
 * `seal` waits for them, fdatasyncs, and writes the index durably — the pack's commit marker.
 */
export class PackWriter {
  private state: PackState = "open";
  private size = PACK_HEADER_BYTES;
  private readonly records: IndexRecord[] = [];
  private readonly pending = new Set<Promise<unknown>>();
  private unsyncedBytes = 0;
  private backgroundSync?: Promise<void>;
  private sealed?: Promise<void>;
  private failure?: FerryError;

  private constructor(
    readonly packId: string,
    private readonly paths: { dir: string; pack: string; index: string },
    private readonly handle: FileHandle,
  ) {}

  static async create(packsDir: string): Promise<PackWriter> {
    const packId = randomBytes(16).toString("hex");
    const paths = packPaths(packsDir, packId);
    await mkdir(paths.dir, { recursive: true });
    const handle = await open(paths.pack, "wx", 0o644);
    await handle.write(encodePackHeader(), 0, PACK_HEADER_BYTES, 0);
    return new PackWriter(packId, paths, handle);
  }

  get bytes(): number {
    return this.size;
  }
  get entries(): number {
    return this.records.length;
  }
  get status(): PackState {
    return this.state;
  }

  /** Reserves the next offset at once (so concurrent appends never overlap) and writes the entry. */
  append(entry: BlockEntry, payload: readonly Uint8Array[]): { offset: number; written: Promise<void> } {
    if (this.state !== "open") throw new FerryError(ErrorCode.Internal, `pack ${this.packId} is ${this.state}`);
    const offset = this.size;
    this.size += BLOCK_ENTRY_HEADER_BYTES + entry.storedLen;
    const record: IndexRecord = { ...entry, offset };
    const written = this.handle
      .writev([encodeBlockEntryHeader(entry), ...payload] as Uint8Array[], offset)
      .then(({ bytesWritten }) => {
        if (bytesWritten !== BLOCK_ENTRY_HEADER_BYTES + entry.storedLen) {
          throw new FerryError(ErrorCode.Io, `short write to pack ${this.packId}`);
        }
        this.records.push(record);
        this.unsyncedBytes += bytesWritten;
        if (this.unsyncedBytes >= BACKGROUND_SYNC_BYTES && !this.backgroundSync) {
          this.unsyncedBytes = 0;
          this.backgroundSync = this.handle.datasync().finally(() => (this.backgroundSync = undefined));
        }
      })
      .catch((err: unknown) => {
        this.fail(FerryError.from(err, ErrorCode.Io));
        throw this.failure;
      });
    this.pending.add(written);
    const forget = () => this.pending.delete(written);
    written.then(forget, forget);
    return { offset, written };
  }

  private fail(error: FerryError): void {
    this.failure ??= error;
    this.state = "failed";
  }

  /** Makes every appended entry durable. Idempotent; every caller gets the same outcome. */
  seal(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    this.sealed ??= this.doSeal();
    return this.sealed;
  }

  private async doSeal(): Promise<void> {
    this.state = "sealing";
    try {
      while (this.pending.size > 0) await Promise.all([...this.pending]);
      if (this.failure) throw this.failure;
      await this.backgroundSync;
      await this.handle.datasync();
      await this.handle.close();
      // Index records in offset order, whatever order the writes completed in.
      this.records.sort((a, b) => a.offset - b.offset);
      await writeFileDurable(this.paths.index, encodePackIndex(this.records));
      await fsyncDir(this.paths.dir);
      this.state = "sealed";
    } catch (err) {
      this.fail(FerryError.from(err, ErrorCode.Io));
      await this.handle.close().catch(() => undefined);
      throw this.failure;
    }
  }

  /** Drops an open pack that will never be sealed (its blocks were never committed). */
  async discard(): Promise<void> {
    if (this.state === "sealed") return;
    this.fail(new FerryError(ErrorCode.Canceled, `pack ${this.packId} discarded`));
    await Promise.allSettled([...this.pending]);
    await this.handle.close().catch(() => undefined);
  }
}
