import { randomBytes } from "node:crypto";

const ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** A random token of letters and digits (62 symbols, ~5.95 bits each). */
export function randomToken(length = 22): string {
  const bytes = randomBytes(length * 2);
  let out = "";
  for (let i = 0; i < bytes.length && out.length < length; i++) {
    const b = bytes[i]!;
    if (b < 248) out += ALPHANUMERIC[b % 62]; // 248 = 4*62: rejection keeps the symbols uniform
  }
  return out.length === length ? out : out + randomToken(length - out.length);
}

/** `<prefix>-<yyyymmddhhmmss>-<8 random>`: readable, sortable by creation, valid as a subject token. */
export function newId(prefix: string, now = Date.now()): string {
  const stamp = new Date(now).toISOString().replace(/[-:T]/g, "").slice(0, 14);
  return `${prefix}-${stamp}-${randomToken(8)}`;
}
