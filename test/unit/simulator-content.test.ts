import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import snappy from "snappy";
import { afterAll, describe, expect, it } from "vitest";
import { BlockKind, blockKindAt, generateBlock, generateDiskImage, sidecarPath, type ContentSpec } from "../../simulators/content.js";

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), "ferry-simcontent-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const mixed: ContentSpec = { seed: 42, zeroPct: 30, compressiblePct: 40, randomPct: 30 };

function countKinds(spec: ContentSpec, from: number, blocks: number): Record<BlockKind, number> {
  const counts = { zero: 0, compressible: 0, random: 0 };
  for (let i = from; i < from + blocks; i++) counts[blockKindAt(spec, i)]++;
  return counts;
}

describe("disk content generator", () => {
  it("holds the requested mix closely, in any window of blocks, for several seeds", () => {
    for (const seed of [1, 42, "vm-7-disk-1"]) {
      const spec = { ...mixed, seed };
      const all = countKinds(spec, 0, 2048);
      expect(Math.abs(all.zero / 2048 - 0.3)).toBeLessThan(0.01);
      expect(Math.abs(all.compressible / 2048 - 0.4)).toBeLessThan(0.01);
      expect(Math.abs(all.random / 2048 - 0.3)).toBeLessThan(0.01);
      // A small window far into a large disk still has the mix within a few blocks.
      const window = countKinds(spec, 15_000, 100);
      expect(Math.abs(window.zero - 30)).toBeLessThanOrEqual(3);
      expect(Math.abs(window.compressible - 40)).toBeLessThanOrEqual(3);
    }
  });

  it("interleaves the kinds instead of laying them out in runs", () => {
    let longestRun = 0;
    let run = 0;
    for (let i = 1; i < 1000; i++) {
      run = blockKindAt(mixed, i) === blockKindAt(mixed, i - 1) ? run + 1 : 0;
      longestRun = Math.max(longestRun, run + 1);
    }
    expect(longestRun).toBeLessThanOrEqual(3);
  });

  it("honours the edges: 100% zero and 0% zero", () => {
    expect(countKinds({ seed: 3, zeroPct: 100, compressiblePct: 0, randomPct: 0 }, 0, 500).zero).toBe(500);
    expect(countKinds({ seed: 3, zeroPct: 0, compressiblePct: 0, randomPct: 100 }, 0, 500).random).toBe(500);
  });

  it("generates the same bytes for the same seed and different bytes for another seed", () => {
    for (let i = 0; i < 12; i++) {
      const a = generateBlock(mixed, i, MiB);
      expect(a.equals(generateBlock(mixed, i, MiB))).toBe(true);
      if (blockKindAt(mixed, i) !== BlockKind.zero) {
        expect(a.equals(generateBlock({ ...mixed, seed: 43 }, i, MiB))).toBe(false);
      }
    }
  });

  it("makes every non-zero block distinct, so blocks do not dedupe by accident", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 64; i++) {
      if (blockKindAt(mixed, i) === BlockKind.zero) continue;
      const hex = generateBlock(mixed, i, MiB).toString("base64");
      expect(seen.has(hex)).toBe(false);
      seen.add(hex);
    }
  });

  it("makes compressible blocks that snappy shrinks 2-3x and random blocks it cannot shrink", () => {
    const textSpec = { seed: 9, zeroPct: 0, compressiblePct: 100, randomPct: 0 };
    const randomSpec = { seed: 9, zeroPct: 0, compressiblePct: 0, randomPct: 100 };
    let raw = 0;
    let packed = 0;
    let randomPacked = 0;
    for (let i = 0; i < 8; i++) {
      raw += MiB;
      packed += snappy.compressSync(generateBlock(textSpec, i, MiB)).length;
      randomPacked += snappy.compressSync(generateBlock(randomSpec, i, MiB)).length;
    }
    expect(raw / packed).toBeGreaterThan(1.9);
    expect(raw / packed).toBeLessThan(3.2);
    expect(randomPacked).toBeGreaterThanOrEqual(raw);
  });

  it("writes an image whose zero blocks are holes and whose other blocks match the generator", async () => {
    const path = join(dir, "mixed.raw");
    const size = 16 * MiB + 4096; // a short last block too
    const result = await generateDiskImage(path, size, mixed);
    expect(result.reused).toBe(false);
    const st = statSync(path);
    expect(st.size).toBe(size);
    let dataBlocks = 0;
    let dataBytes = 0;
    const image = readFileSync(path);
    for (let i = 0; i * MiB < size; i++) {
      const length = Math.min(MiB, size - i * MiB);
      const expected = generateBlock(mixed, i, length);
      expect(image.subarray(i * MiB, i * MiB + length).equals(expected)).toBe(true);
      if (blockKindAt(mixed, i) !== BlockKind.zero) {
        dataBlocks++;
        dataBytes += length;
      }
    }
    expect(result.writtenBytes).toBe(dataBytes);
    // Allocated space is the data blocks only (plus a little filesystem metadata), not the zeros.
    expect(st.blocks * 512).toBeLessThan(dataBytes + 256 * 1024);
    expect(st.blocks * 512).toBeGreaterThanOrEqual((dataBlocks - 1) * MiB);
  });

  it("makes a 20 GiB mostly-empty disk without writing its zeros", async () => {
    const path = join(dir, "big.raw");
    const spec = { seed: 5, zeroPct: 99.9, compressiblePct: 0.05, randomPct: 0.05 };
    const result = await generateDiskImage(path, 20 * 1024 * MiB, spec, undefined, { fsync: false });
    const st = statSync(path);
    expect(st.size).toBe(20 * 1024 * MiB);
    expect(result.writtenBytes).toBeLessThan(40 * MiB);
    expect(st.blocks * 512).toBeLessThan(48 * MiB);
  });

  it("keeps an existing image whose sidecar matches and regenerates when the spec changes", async () => {
    const path = join(dir, "reuse.raw");
    const first = await generateDiskImage(path, 4 * MiB, mixed);
    expect(first.reused).toBe(false);
    expect(JSON.parse(readFileSync(sidecarPath(path), "utf8"))).toMatchObject({ seed: "42", zeroPct: 30, sizeBytes: 4 * MiB });
    // Mark the file: a reuse keeps the mark, a regeneration replaces it.
    const marked = readFileSync(path);
    marked.write("MARK", 0);
    writeFileSync(path, marked);
    const second = await generateDiskImage(path, 4 * MiB, mixed);
    expect(second.reused).toBe(true);
    expect(readFileSync(path).subarray(0, 4).toString()).toBe("MARK");
    const third = await generateDiskImage(path, 4 * MiB, { ...mixed, seed: 43 });
    expect(third.reused).toBe(false);
    expect(readFileSync(path).subarray(0, 4).toString()).not.toBe("MARK");
    const resized = await generateDiskImage(path, 5 * MiB, { ...mixed, seed: 43 });
    expect(resized.reused).toBe(false);
    expect(statSync(path).size).toBe(5 * MiB);
  });

  it("refuses percentages that do not sum to 100", async () => {
    await expect(generateDiskImage(join(dir, "bad.raw"), MiB, { seed: 1, zeroPct: 50, compressiblePct: 10, randomPct: 10 })).rejects.toThrow(/sum to 100/);
  });
});
