import { randomBytes } from "node:crypto";
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockDigest, digestHex } from "../../lib/block-codec.js";
import { BlockWorkers, type SlotArena } from "../../lib/block-workers.js";

const MiB = 1 << 20;
const text = Buffer.from("2026-11-26T12:00:00Z INFO api request served in 12 ms status=200\n".repeat(20000).slice(0, MiB));

describe("block workers", () => {
  let workers: BlockWorkers;
  let arena: SlotArena;
  beforeAll(() => {
    workers = new BlockWorkers({ threads: 2 });
    arena = workers.createArena(MiB, 4);
  });
  afterAll(async () => {
    arena.close();
    await workers.close();
  });

  async function encode(data: Buffer) {
    const slot = await arena.acquire();
    arena.view(slot, data.length).set(data);
    const encoded = await arena.encode(slot, data.length, "snappy");
    return { slot, encoded: { ...encoded, stored: encoded.stored ? Buffer.from(encoded.stored) : undefined } };
  }

  it("reports zero blocks without digesting them", async () => {
    const { slot, encoded } = await encode(Buffer.alloc(MiB));
    arena.release(slot);
    expect(encoded).toMatchObject({ zero: true });
  });

  it("compresses text, stores random data as is, and names both by their BLAKE3 digest", async () => {
    const random = randomBytes(MiB);
    for (const [data, codec] of [[text, "snappy"], [random, "none"]] as const) {
      const { slot, encoded } = await encode(data);
      arena.release(slot);
      expect(encoded.codec).toBe(codec);
      expect(digestHex(encoded.digest!)).toBe(digestHex(blockDigest(data)));
      if (codec === "snappy") expect(encoded.stored!.length).toBeLessThan(data.length / 4);
      else expect(encoded.stored!.equals(data)).toBe(true);
    }
  });

  it("decodes, verifies and writes a block in place", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ferry-workers-"));
    const path = join(dir, "out.raw");
    const fd = openSync(path, "w+");
    ftruncateSync(fd, 3 * MiB);
    try {
      const { slot, encoded } = await encode(text);
      arena.view(slot, encoded.stored!.length).set(encoded.stored!);
      await arena.decode(slot, { block: 2, storedLength: encoded.stored!.length, codec: "snappy", rawLength: MiB, digest: digestHex(encoded.digest!), sum: encoded.sum! }, { fd, position: 2 * MiB });
      arena.release(slot);
    } finally {
      closeSync(fd);
    }
    const written = readFileSync(path);
    expect(written.subarray(2 * MiB).equals(text)).toBe(true);
    expect(written.subarray(0, 2 * MiB).equals(Buffer.alloc(2 * MiB))).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });

  it("rejects a block whose checksum, compressed bytes or digest do not match", async () => {
    const { slot, encoded } = await encode(text);
    const stored = encoded.stored!;
    const spec = { block: 0, storedLength: stored.length, codec: "snappy" as const, rawLength: MiB, digest: digestHex(encoded.digest!), sum: encoded.sum! };
    arena.view(slot, stored.length).set(stored);
    await expect(arena.decode(slot, { ...spec, sum: "0".repeat(16) })).rejects.toMatchObject({ code: "corrupt", message: expect.stringMatching(/checksum/) });
    await expect(arena.decode(slot, { ...spec, digest: "ab".repeat(32) })).rejects.toMatchObject({ code: "corrupt", message: expect.stringMatching(/digest/) });
    await expect(arena.decode(slot, { ...spec, rawLength: MiB - 1 })).rejects.toMatchObject({ code: "corrupt" });
    await arena.decode(slot, spec); // and the same block passes when nothing is wrong
    arena.release(slot);
  });
});
