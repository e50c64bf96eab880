import { z } from "zod";

/**
 * An identifier that is also a valid NATS subject token and KV key part:
 * letters, digits, `_` and `-`, starting with a letter or digit, at most 128 characters.
 */
export const Id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/, "must be 1-128 of [A-Za-z0-9_-], starting with a letter or digit");
export type Id = z.infer<typeof Id>;

/** Milliseconds since the Unix epoch. */
export const EpochMs = z.number().int().nonnegative();

export const ByteCount = z.number().int().nonnegative();

/** Binary data (msgpack bin); any Uint8Array, Node Buffers included. */
export const Bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, "must be binary data");

/** BLAKE3-256 of a block's raw content, 32 bytes. */
export const Digest = Bytes.refine((b) => b.length === 32, "must be 32 bytes");

/** Block sizes Ferry accepts: a power of two from 64 KiB to 8 MiB. */
export const BlockSize = z
  .number()
  .int()
  .refine((n) => n >= 64 * 1024 && n <= 8 * 1024 * 1024 && (n & (n - 1)) === 0, "must be a power of two from 64 KiB to 8 MiB");

export const DEFAULT_BLOCK_SIZE = 1024 * 1024;
