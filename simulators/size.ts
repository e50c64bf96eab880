import { ErrorCode, FerryError } from "../protocol/mod.js";

/** Multipliers of the units `parseSize` accepts; the bare letters are binary, as in dd and qemu-img. */
const UNITS: Readonly<Record<string, number>> = {
  b: 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  tb: 1000 ** 4,
};

const SIZE = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/;

/**
 * A byte count from a number or a string such as `"4096"`, `"256MiB"`, `"2GiB"`, `"1.5G"` or
 * `"10MB"`. KiB/MiB/GiB/TiB and K/M/G/T are powers of 1024; KB/MB/GB/TB powers of 1000.
 * Throws a FerryError (`bad_request`) for anything else, or for a result that is not a whole number.
 */
export function parseSize(value: number | string): number {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new FerryError(ErrorCode.BadRequest, `invalid size ${value}: must be a non-negative whole number of bytes`);
    }
    return value;
  }
  const match = SIZE.exec(value);
  const multiplier = match ? UNITS[(match[2] ?? "").toLowerCase() || "b"] : undefined;
  if (!match || multiplier === undefined) {
    throw new FerryError(
      ErrorCode.BadRequest,
      `invalid size ${JSON.stringify(value)}: expected a number with an optional unit (B, KiB, MiB, GiB, TiB, K, M, G, T, KB, MB, GB, TB)`,
    );
  }
  const bytes = Number(match[1]) * multiplier;
  if (!Number.isSafeInteger(bytes)) {
    throw new FerryError(ErrorCode.BadRequest, `invalid size ${JSON.stringify(value)}: not a whole number of bytes`);
  }
  return bytes;
}

/** A byte count for humans: `268435456` → `"256 MiB"`. */
export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || Number.isInteger(value) ? 0 : value < 10 ? 2 : 1;
  return `${value.toFixed(digits)} ${units[unit]}`;
}
