import { Packr } from "msgpackr";
import { z } from "zod";
import { BlockCodec, ErrorCode, FerryError, RestorePoint } from "../../../protocol/mod.js";
import { blockDigest } from "../../../lib/block-codec.js";

/**
 * Ferry's repository format, version 1 (docs/repository-format.md). Every file starts with an
 * 8-byte magic tag that never changes; readers reject versions they do not know.
 */
export const REPOSITORY_FORMAT_VERSION = 1;

export const Magic = {
  config: Buffer.from("FERRYRC1"),
  pack: Buffer.from("FERRYPK1"),
  packIndex: Buffer.from("FERRYIX1"),
  manifest: Buffer.from("FERRYMF1"),
  restorePoint: Buffer.from("FERRYRP1"),
  blockEntry: Buffer.from("FBLK"),
} as const;

export const PACK_HEADER_BYTES = 16;
export const BLOCK_ENTRY_HEADER_BYTES = 64;
export const INDEX_RECORD_BYTES = 64;
export const DIGEST_BYTES = 32;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

const CODEC_IDS: Record<BlockCodec, number> = { none: 0, snappy: 1 };
const CODEC_BY_ID: readonly BlockCodec[] = [BlockCodec.None, BlockCodec.Snappy];

function codecFromId(id: number): BlockCodec {
  const codec = CODEC_BY_ID[id];
  if (!codec) throw new FerryError(ErrorCode.Corrupt, `unknown block codec id ${id}`);
  return codec;
}

function checkMagic(data: Uint8Array, magic: Buffer, what: string): void {
  if (data.length < magic.length || Buffer.compare(data.subarray(0, magic.length), magic) !== 0) {
    throw new FerryError(ErrorCode.Corrupt, `${what}: bad magic (not a Ferry ${what} or an unknown format)`);
  }
}

// --- repository config ---

export const RepositoryConfigFile = z.object({
  format: z.literal(REPOSITORY_FORMAT_VERSION),
  id: z.string(),
  createdAt: z.number(),
  /** How blocks are named. */
  digest: z.literal("blake3-256"),
  /** How stored bytes are guarded. */
  checksum: z.literal("xxh64"),
  /** Packs are sealed when they reach this size. */
  packMaxBytes: z.number().int().positive(),
});
export type RepositoryConfigFile = z.infer<typeof RepositoryConfigFile>;

export function encodeConfig(config: RepositoryConfigFile): Buffer {
  // Magic, then readable JSON: an operator can `tail -c +9 config`.
  return Buffer.concat([Magic.config, Buffer.from(JSON.stringify(config, null, 2) + "\n")]);
}

export function decodeConfig(data: Uint8Array): RepositoryConfigFile {
  checkMagic(data, Magic.config, "repository config");
  const json = JSON.parse(Buffer.from(data.subarray(Magic.config.length)).toString("utf8")) as { format?: unknown };
  if (json.format !== REPOSITORY_FORMAT_VERSION) {
    throw new FerryError(ErrorCode.UnsupportedVersion, `repository format ${String(json.format)} is not supported (supported: ${REPOSITORY_FORMAT_VERSION})`);
  }
  return RepositoryConfigFile.parse(json);
}

// --- pack files ---

/** Pack header: magic (8), format u32 LE, reserved u32. */
export function encodePackHeader(): Buffer {
  const header = Buffer.alloc(PACK_HEADER_BYTES);
  Magic.pack.copy(header, 0);
  header.writeUInt32LE(REPOSITORY_FORMAT_VERSION, 8);
  return header;
}

export function checkPackHeader(header: Uint8Array): void {
  checkMagic(header, Magic.pack, "pack");
  const version = Buffer.from(header.buffer, header.byteOffset, header.byteLength).readUInt32LE(8);
  if (version !== REPOSITORY_FORMAT_VERSION) throw new FerryError(ErrorCode.UnsupportedVersion, `pack format ${version} is not supported`);
}

export interface BlockEntry {
  digest: Uint8Array;
  codec: BlockCodec;
  rawLen: number;
  storedLen: number;
  /** xxh64 of the stored bytes, 16 hex digits. */
  sum: string;
}

/**
 * Block entry header (64 bytes) before each stored payload in a pack:
 * magic "FBLK" (4) | codec u8 | flags u8 (0; encryption later) | reserved u16 | rawLen u32 |
 * storedLen u32 | xxh64 of stored bytes (8, big-endian) | digest (32) | reserved (8).
 */
export function encodeBlockEntryHeader(entry: BlockEntry): Buffer {
  const h = Buffer.alloc(BLOCK_ENTRY_HEADER_BYTES);
  Magic.blockEntry.copy(h, 0);
  h.writeUInt8(CODEC_IDS[entry.codec], 4);
  h.writeUInt32LE(entry.rawLen, 8);
  h.writeUInt32LE(entry.storedLen, 12);
  h.write(entry.sum, 16, 8, "hex");
  Buffer.from(entry.digest.buffer, entry.digest.byteOffset, DIGEST_BYTES).copy(h, 24);
  return h;
}

export function decodeBlockEntryHeader(data: Uint8Array): BlockEntry {
  const h = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  checkMagic(h, Magic.blockEntry, "block entry");
  if (h.readUInt8(5) !== 0) throw new FerryError(ErrorCode.UnsupportedVersion, `block entry flags ${h.readUInt8(5)} not supported`);
  return {
    codec: codecFromId(h.readUInt8(4)),
    rawLen: h.readUInt32LE(8),
    storedLen: h.readUInt32LE(12),
    sum: h.toString("hex", 16, 24),
    digest: Buffer.from(h.subarray(24, 24 + DIGEST_BYTES)),
  };
}

// --- pack index files ---

export interface IndexRecord extends BlockEntry {
  /** Offset of the block entry header in the pack. */
  offset: number;
}

/**
 * Pack index: magic (8) | format u32 | count u32 | count × 64-byte records | BLAKE3 of all
 * preceding bytes (32). Record: digest (32) | offset u64 | rawLen u32 | storedLen u32 | sum (8) |
 * codec u8 | flags u8 | reserved (6). The index is the pack's commit marker: a pack without one
 * is incomplete.
 */
export function encodePackIndex(records: readonly IndexRecord[]): Buffer {
  const body = Buffer.alloc(16 + records.length * INDEX_RECORD_BYTES);
  Magic.packIndex.copy(body, 0);
  body.writeUInt32LE(REPOSITORY_FORMAT_VERSION, 8);
  body.writeUInt32LE(records.length, 12);
  records.forEach((r, i) => {
    const at = 16 + i * INDEX_RECORD_BYTES;
    Buffer.from(r.digest.buffer, r.digest.byteOffset, DIGEST_BYTES).copy(body, at);
    body.writeBigUInt64LE(BigInt(r.offset), at + 32);
    body.writeUInt32LE(r.rawLen, at + 40);
    body.writeUInt32LE(r.storedLen, at + 44);
    body.write(r.sum, at + 48, 8, "hex");
    body.writeUInt8(CODEC_IDS[r.codec], at + 56);
  });
  return Buffer.concat([body, blockDigest(body)]);
}

export function decodePackIndex(data: Uint8Array): IndexRecord[] {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  checkMagic(buf, Magic.packIndex, "pack index");
  if (buf.length < 16 + DIGEST_BYTES) throw new FerryError(ErrorCode.Corrupt, "pack index truncated");
  const version = buf.readUInt32LE(8);
  if (version !== REPOSITORY_FORMAT_VERSION) throw new FerryError(ErrorCode.UnsupportedVersion, `pack index format ${version} is not supported`);
  const count = buf.readUInt32LE(12);
  const bodyLen = 16 + count * INDEX_RECORD_BYTES;
  if (buf.length !== bodyLen + DIGEST_BYTES) throw new FerryError(ErrorCode.Corrupt, "pack index has the wrong length");
  if (!blockDigest(buf.subarray(0, bodyLen)).equals(buf.subarray(bodyLen))) throw new FerryError(ErrorCode.Corrupt, "pack index checksum mismatch");
  const records: IndexRecord[] = [];
  for (let i = 0; i < count; i++) {
    const at = 16 + i * INDEX_RECORD_BYTES;
    records.push({
      digest: Buffer.from(buf.subarray(at, at + DIGEST_BYTES)),
      offset: Number(buf.readBigUInt64LE(at + 32)),
      rawLen: buf.readUInt32LE(at + 40),
      storedLen: buf.readUInt32LE(at + 44),
      sum: buf.toString("hex", at + 48, at + 56),
      codec: codecFromId(buf.readUInt8(at + 56)),
    });
  }
  return records;
}

// --- disk manifests ---

export const ManifestHeader = z.object({
  format: z.literal(REPOSITORY_FORMAT_VERSION),
  restorePointId: z.string(),
  jobId: z.string(),
  vmId: z.string(),
  diskId: z.string(),
  label: z.string(),
  sizeBytes: z.number().int().nonnegative(),
  blockSize: z.number().int().positive(),
  totalBlocks: z.number().int().nonnegative(),
  zeroBlocks: z.number().int().nonnegative(),
  createdAt: z.number(),
});
export type ManifestHeader = z.infer<typeof ManifestHeader>;

export interface Manifest {
  header: ManifestHeader;
  /** 32 bytes per block in disk order; 32 zero bytes for an all-zero block. */
  digests: Buffer;
}

/** Manifest: magic (8) | header length u32 | msgpack header | digests (32 × totalBlocks). */
export function encodeManifest(manifest: Manifest): Buffer {
  const header = packr.pack(manifest.header);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  return Buffer.concat([Magic.manifest, len, header, manifest.digests]);
}

export function decodeManifest(data: Uint8Array): Manifest {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  checkMagic(buf, Magic.manifest, "manifest");
  const headerLen = buf.readUInt32LE(8);
  const raw = packr.unpack(buf.subarray(12, 12 + headerLen)) as { format?: unknown };
  if (raw.format !== REPOSITORY_FORMAT_VERSION) throw new FerryError(ErrorCode.UnsupportedVersion, `manifest format ${String(raw.format)} is not supported`);
  const header = ManifestHeader.parse(raw);
  const digests = buf.subarray(12 + headerLen);
  if (digests.length !== header.totalBlocks * DIGEST_BYTES) throw new FerryError(ErrorCode.Corrupt, "manifest digest list has the wrong length");
  return { header, digests };
}

// --- restore point files ---

/** Restore point file: magic (8) | msgpack of {format, restorePoint}. Written last; its presence makes the restore point visible. */
export function encodeRestorePoint(restorePoint: RestorePoint): Buffer {
  return Buffer.concat([Magic.restorePoint, packr.pack({ format: REPOSITORY_FORMAT_VERSION, restorePoint })]);
}

export function decodeRestorePoint(data: Uint8Array): RestorePoint {
  checkMagic(data, Magic.restorePoint, "restore point");
  const raw = packr.unpack(data.subarray(Magic.restorePoint.length)) as { format?: unknown; restorePoint?: unknown };
  if (raw.format !== REPOSITORY_FORMAT_VERSION) throw new FerryError(ErrorCode.UnsupportedVersion, `restore point format ${String(raw.format)} is not supported`);
  return RestorePoint.parse(raw.restorePoint);
}

export const ZERO_DIGEST = Buffer.alloc(DIGEST_BYTES);
