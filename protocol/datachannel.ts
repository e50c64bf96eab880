import { z } from "zod";
import { ByteCount } from "./common.js";
import { defineMessage } from "./codec.js";
import { ErrorCode, FerryError, WireErrorSchema } from "./errors.js";
import { TaskOutcome, TaskStats } from "./session.js";
import { subject } from "./subject.js";

/**
 * A data channel carries one task's blocks between a sender and a receiver on core NATS (not
 * JetStream: payloads would be written twice). Frames flow on `ferry.data.<channelId>.fwd`;
 * credits and the final seal flow back on `ferry.data.<channelId>.rev`.
 *
 * Order: receiver opens (grants `window` frames) → sender sends block frames, each consuming a
 * credit → receiver grants credits as frames are written → sender sends `end` → receiver makes
 * everything durable and answers `sealed` (or `error`). Either side may `abort`/`error` at any
 * time. A gap in `Ferry-Seq` is a lost frame: the receiver fails the channel.
 */
export const dataSubjects = {
  /** `ferry.data.<channelId>.fwd`: sender → receiver frames. */
  forward: (channelId: string) => subject("data", channelId, "fwd"),
  /** `ferry.data.<channelId>.rev`: receiver → sender credits and seal. */
  reverse: (channelId: string) => subject("data", channelId, "rev"),
} as const;

/** Header names of a frame; block metadata travels in headers so the payload is published as is. */
export const FrameHeader = {
  Kind: "Ferry-Kind",
  Seq: "Ferry-Seq",
  Block: "Ferry-Block",
  Part: "Ferry-Part",
  Parts: "Ferry-Parts",
  Digest: "Ferry-Digest",
  Codec: "Ferry-Codec",
  RawLen: "Ferry-Raw-Len",
  StoredLen: "Ferry-Stored-Len",
  Sum: "Ferry-Sum",
} as const;

export const FrameKind = { Block: "block", End: "end", Abort: "abort" } as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

export const BlockCodec = { Snappy: "snappy", None: "none" } as const;
export type BlockCodec = (typeof BlockCodec)[keyof typeof BlockCodec];

/** Header room reserved in each message so a frame never exceeds the server's max_payload. */
export const FRAME_HEADER_ROOM = 1024;

const Uint = z.coerce.number().int().nonnegative();
const HEX64 = /^[0-9a-f]{64}$/;
const HEX16 = /^[0-9a-f]{16}$/;

/** The metadata of a block frame; one block is split into `parts` frames when it exceeds a frame. */
export const BlockFrameMeta = z
  .object({
    seq: Uint.pipe(z.number().min(1)),
    block: Uint,
    part: Uint,
    parts: Uint.pipe(z.number().min(1).max(1024)),
    /** BLAKE3-256 of the raw block, hex. */
    digest: z.string().regex(HEX64),
    codec: z.enum([BlockCodec.Snappy, BlockCodec.None]),
    rawLen: Uint.pipe(z.number().min(1)),
    storedLen: Uint.pipe(z.number().min(1)),
    /** xxh64 of the whole stored payload (all parts), hex: catches corruption without decompressing. */
    sum: z.string().regex(HEX16),
  })
  .refine((m) => m.part < m.parts, "part must be below parts");
export type BlockFrameMeta = z.infer<typeof BlockFrameMeta>;

/** Minimal view of NATS headers, so this module does not depend on a client version. */
export interface HeaderReader {
  get(name: string): string;
}
export interface HeaderWriter {
  set(name: string, value: string): void;
}

export function readFrameKind(headers: HeaderReader | undefined): FrameKind {
  const kind = headers?.get(FrameHeader.Kind);
  if (kind === FrameKind.Block || kind === FrameKind.End || kind === FrameKind.Abort) return kind;
  throw new FerryError(ErrorCode.BadRequest, `frame without a valid ${FrameHeader.Kind} header: ${JSON.stringify(kind ?? null)}`);
}

export function readFrameSeq(headers: HeaderReader): number {
  const seq = Number(headers.get(FrameHeader.Seq));
  if (!Number.isSafeInteger(seq) || seq < 1) {
    throw new FerryError(ErrorCode.BadRequest, `frame with invalid ${FrameHeader.Seq}`);
  }
  return seq;
}

export function writeBlockFrameHeaders(h: HeaderWriter, meta: BlockFrameMeta): void {
  h.set(FrameHeader.Kind, FrameKind.Block);
  h.set(FrameHeader.Seq, String(meta.seq));
  h.set(FrameHeader.Block, String(meta.block));
  h.set(FrameHeader.Part, String(meta.part));
  h.set(FrameHeader.Parts, String(meta.parts));
  h.set(FrameHeader.Digest, meta.digest);
  h.set(FrameHeader.Codec, meta.codec);
  h.set(FrameHeader.RawLen, String(meta.rawLen));
  h.set(FrameHeader.StoredLen, String(meta.storedLen));
  h.set(FrameHeader.Sum, meta.sum);
}

export function readBlockFrameMeta(h: HeaderReader): BlockFrameMeta {
  const parsed = BlockFrameMeta.safeParse({
    seq: h.get(FrameHeader.Seq),
    block: h.get(FrameHeader.Block),
    part: h.get(FrameHeader.Part),
    parts: h.get(FrameHeader.Parts),
    digest: h.get(FrameHeader.Digest),
    codec: h.get(FrameHeader.Codec),
    rawLen: h.get(FrameHeader.RawLen),
    storedLen: h.get(FrameHeader.StoredLen),
    sum: h.get(FrameHeader.Sum),
  });
  if (!parsed.success) {
    const where = parsed.error.issues.map((i) => `${i.path.join(".") || "frame"}: ${i.message}`).join("; ");
    throw new FerryError(ErrorCode.BadRequest, `invalid block frame: ${where}`);
  }
  return parsed.data;
}

/** Body of the `end` frame: what the sender sent, checked by the receiver before it seals. */
export const DataEnd = defineMessage("data.end", {
  /** Seq of this end frame; every lower seq must have arrived. */
  frames: z.number().int().min(1),
  /** Non-zero blocks sent. */
  blocks: z.number().int().nonnegative(),
  /** Blocks of the disk in all, zero blocks included. */
  totalBlocks: z.number().int().nonnegative(),
  sizeBytes: ByteCount,
  /** The sender's statistics, merged into the task's. */
  stats: TaskStats,
});

export const DataAbort = defineMessage("data.abort", { error: WireErrorSchema });

export const DataCredit = defineMessage("data.credit", {
  /** Further frames the sender may send. */
  grant: z.number().int().min(1),
  /** Highest seq the receiver has processed. */
  processedSeq: z.number().int().nonnegative(),
});

export const DataSealed = defineMessage("data.sealed", { stats: TaskStats, outcome: TaskOutcome });
export const DataError = defineMessage("data.error", { error: WireErrorSchema });
