import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FerryError, FrameHeader, readBlockFrameMeta, readFrameKind, writeBlockFrameHeaders, type BlockFrameMeta } from "../../protocol/mod.js";
import { isZero, payloadSum, sampleEntropy, INCOMPRESSIBLE_ENTROPY_BITS } from "../../lib/block-codec.js";
import { randomBytes } from "node:crypto";

class Headers {
  readonly map = new Map<string, string>();
  set(name: string, value: string) {
    this.map.set(name, value);
  }
  get(name: string) {
    return this.map.get(name) ?? "";
  }
}

const meta = (over: Partial<BlockFrameMeta> = {}): BlockFrameMeta => ({
  seq: 7, block: 3, part: 1, parts: 2, digest: "ab".repeat(32), codec: "snappy", rawLen: 1048576, storedLen: 600_000, sum: "0123456789abcdef", ...over,
});

describe("block frame headers", () => {
  it("round-trip every field", () => {
    fc.assert(
      fc.property(fc.nat({ max: 1e9 }), fc.nat({ max: 1e6 }), fc.integer({ min: 1, max: 64 }), (seq, block, parts) => {
        const h = new Headers();
        const m = meta({ seq: seq + 1, block, parts, part: parts - 1 });
        writeBlockFrameHeaders(h, m);
        expect(readFrameKind(h)).toBe("block");
        expect(readBlockFrameMeta(h)).toEqual(m);
      }),
    );
  });

  it("reject a part index beyond the part count, a short digest and an unknown codec", () => {
    for (const bad of [meta({ part: 2, parts: 2 }), meta({ digest: "abc" }), meta({ codec: "zstd" as never })]) {
      const h = new Headers();
      writeBlockFrameHeaders(h, bad);
      expect(() => readBlockFrameMeta(h)).toThrow(FerryError);
    }
  });

  it("reject a frame without a kind", () => {
    expect(() => readFrameKind(new Headers())).toThrow(new RegExp(FrameHeader.Kind));
  });
});

describe("block codec", () => {
  it("detects zero blocks and only zero blocks", () => {
    const block = Buffer.alloc(1 << 20);
    expect(isZero(block)).toBe(true);
    block[block.length - 1] = 1;
    expect(isZero(block)).toBe(false);
  });

  it("tells random data from text by a sample's entropy", () => {
    const text = Buffer.from("2026-11-26 INFO request served in 12 ms\n".repeat(30000).slice(0, 1 << 20));
    expect(sampleEntropy(randomBytes(1 << 20))).toBeGreaterThan(INCOMPRESSIBLE_ENTROPY_BITS);
    expect(sampleEntropy(text)).toBeLessThan(INCOMPRESSIBLE_ENTROPY_BITS);
  });

  it("checksums parts the same as the whole payload", () => {
    const data = randomBytes(100_000);
    expect(payloadSum([data.subarray(0, 12_345), data.subarray(12_345)])).toBe(payloadSum(data));
    expect(payloadSum(data)).toMatch(/^[0-9a-f]{16}$/);
  });
});
