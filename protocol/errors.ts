import { z } from "zod";

/** Error codes that cross process boundaries. Callers decide retries from `retryable`, never from text. */
export const ErrorCode = {
  /** The message could not be decoded or failed its schema. */
  BadRequest: "bad_request",
  /** The message carries a protocol version this receiver does not speak. */
  UnsupportedVersion: "unsupported_version",
  /** A named thing (job, VM, disk, restore point, task, channel) does not exist. */
  NotFound: "not_found",
  /** The request conflicts with current state (snapshot exists, slot taken, CAS lost). */
  Conflict: "conflict",
  /** Block payload or stored data failed its checksum or digest. */
  Corrupt: "corrupt",
  /** The receiver is draining or has no capacity now; try again later or elsewhere. */
  Unavailable: "unavailable",
  /** A peer did not answer in time. */
  Timeout: "timeout",
  /** The operation was canceled on request. */
  Canceled: "canceled",
  /** I/O failure on disk or device. */
  Io: "io",
  /** Anything else: a bug or an unexpected state. */
  Internal: "internal",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const RETRYABLE_BY_DEFAULT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.Unavailable,
  ErrorCode.Timeout,
  ErrorCode.Io,
]);

export const WireErrorSchema = z.object({
  code: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]),
  message: z.string(),
  retryable: z.boolean(),
});
/** The form an error takes on the bus and in stored records. */
export type WireError = z.infer<typeof WireErrorSchema>;

/** The one error class Ferry throws across boundaries; `code` says what kind of failure it is. */
export class FerryError extends Error {
  override readonly name = "FerryError";
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options?: { retryable?: boolean; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options?.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
  }

  toWire(): WireError {
    return { code: this.code, message: this.message, retryable: this.retryable };
  }

  static fromWire(wire: WireError): FerryError {
    return new FerryError(wire.code, wire.message, { retryable: wire.retryable });
  }

  /** Wraps anything thrown into a FerryError, keeping FerryErrors as they are. */
  static from(err: unknown, fallback: ErrorCode = ErrorCode.Internal): FerryError {
    if (err instanceof FerryError) return err;
    const message = err instanceof Error ? err.message : String(err);
    const errno = (err as NodeJS.ErrnoException | undefined)?.code;
    if (errno === "ENOENT") return new FerryError(ErrorCode.NotFound, message, { cause: err });
    if (typeof errno === "string" && errno.startsWith("E")) return new FerryError(ErrorCode.Io, message, { cause: err });
    return new FerryError(fallback, message, { cause: err });
  }
}

export function isFerryError(err: unknown, code?: ErrorCode): err is FerryError {
  return err instanceof FerryError && (code === undefined || err.code === code);
}
