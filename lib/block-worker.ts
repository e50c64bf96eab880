/**
 * A block worker: the CPU-heavy per-block work (zero check, BLAKE3, compression, checksum;
 * on restore decompression, digest check and the positional write) on its own thread, so the
 * event loop only moves bytes. Compression and decompression run synchronously here: allocations
 * and frees of the native libraries then happen on one thread, which keeps their allocator's
 * memory bounded (async calls free on another thread, and the memory piled up to ~400 MiB).
 */
import { writeSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import { compressSync, uncompressSync } from "snappy";
import { blockDigest, isZero, payloadSum, sampleEntropy, INCOMPRESSIBLE_ENTROPY_BITS } from "./block-codec.js";
import type { WorkerReply, WorkerRequest } from "./block-workers.js";

/** Each task's slot memory, shared once when the task starts ("attach"). */
const arenas = new Map<number, SharedArrayBuffer>();

function view(arena: number, slotOffset: number, length: number): Buffer {
  const memory = arenas.get(arena);
  if (!memory) throw new Error(`unknown slot arena ${arena}`);
  return Buffer.from(memory, slotOffset, length);
}

function handle(req: WorkerRequest): { reply: WorkerReply; transfer: ArrayBuffer[] } | undefined {
  switch (req.op) {
    case "attach":
      arenas.set(req.arena, req.memory);
      return undefined;
    case "detach":
      arenas.delete(req.arena);
      return undefined;
    case "encode": {
      const raw = view(req.arena, req.slotOffset, req.length);
      if (isZero(raw)) return { reply: { id: req.id, op: "encode", zero: true }, transfer: [] };
      const digest = blockDigest(raw);
      let compressed: Buffer | undefined;
      if (req.codec === "snappy" && sampleEntropy(raw) <= INCOMPRESSIBLE_ENTROPY_BITS) {
        const out = compressSync(raw, { copyOutputData: true });
        if (out.length < raw.length) compressed = out;
      }
      const stored = compressed ?? raw;
      const reply: WorkerReply = {
        id: req.id,
        op: "encode",
        zero: false,
        digest: new Uint8Array(digest),
        codec: compressed ? "snappy" : "none",
        sum: payloadSum(stored),
        storedLength: stored.length,
      };
      if (!compressed) return { reply, transfer: [] };
      // A standalone copy that can be transferred without copying again.
      const owned = new Uint8Array(compressed.length);
      owned.set(compressed);
      reply.compressed = owned;
      return { reply, transfer: [owned.buffer] };
    }
    case "decode": {
      const stored = view(req.arena, req.slotOffset, req.storedLength);
      if (payloadSum(stored) !== req.sum) return { reply: { id: req.id, op: "decode", error: { code: "corrupt", message: `block ${req.block}: checksum mismatch` } }, transfer: [] };
      let raw: Buffer;
      if (req.codec === "none") {
        raw = stored;
      } else {
        try {
          raw = uncompressSync(stored, { asBuffer: true, copyOutputData: true }) as Buffer;
        } catch (err) {
          return { reply: { id: req.id, op: "decode", error: { code: "corrupt", message: `block ${req.block} does not decompress: ${(err as Error).message}` } }, transfer: [] };
        }
      }
      if (raw.length !== req.rawLength) {
        return { reply: { id: req.id, op: "decode", error: { code: "corrupt", message: `block ${req.block} is ${raw.length} bytes, expected ${req.rawLength}` } }, transfer: [] };
      }
      if (Buffer.from(blockDigest(raw)).toString("hex") !== req.digest) {
        return { reply: { id: req.id, op: "decode", error: { code: "corrupt", message: `block ${req.block}: digest mismatch` } }, transfer: [] };
      }
      if (req.fd !== undefined) {
        const written = writeSync(req.fd, raw, 0, raw.length, req.position);
        if (written !== raw.length) return { reply: { id: req.id, op: "decode", error: { code: "io", message: `short write at block ${req.block}` } }, transfer: [] };
      }
      return { reply: { id: req.id, op: "decode" }, transfer: [] };
    }
  }
}

parentPort!.on("message", (req: WorkerRequest) => {
  let result: { reply: WorkerReply; transfer: ArrayBuffer[] } | undefined;
  try {
    result = handle(req);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code?.startsWith("E") ? "io" : "internal";
    if (req.op === "encode" || req.op === "decode") {
      result = { reply: { id: req.id, op: req.op, error: { code, message: (err as Error).message } }, transfer: [] };
    }
  }
  if (!result) return;
  parentPort!.postMessage(result.reply, result.transfer);
});
