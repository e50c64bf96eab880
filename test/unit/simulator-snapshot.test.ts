import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isFerryError } from "../../protocol/mod.js";
import { parseSimulatorConfig, type SimulatorConfig } from "../../simulators/config.js";
import { DELTA_CHUNK_BYTES } from "../../simulators/hypervisor/disk.js";
import { SimHypervisor } from "../../simulators/hypervisor/hypervisor.js";

const MiB = 1024 * 1024;
const log = pino({ level: "silent" });

let dir: string;
let open: SimHypervisor[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "ferry-simsnap-"));
  open = [];
});
afterEach(async () => {
  for (const hv of open) await hv.close();
  rmSync(dir, { recursive: true, force: true });
});

function config(extra: { retain?: boolean; image?: string } = {}): SimulatorConfig {
  return parseSimulatorConfig(
    {
      hypervisorId: "sim-t",
      retainSnapshotImages: extra.retain ?? true,
      hosts: [{ id: "host-1" }],
      datastores: [{ id: "ds-1", path: join(dir, "ds"), capacityBytes: "1GiB" }],
      vms: [
        {
          id: "vm-1",
          disks: [
            { id: "disk-1", sizeBytes: "4MiB", content: { kind: "generated", seed: 1, zeroPct: 25, compressiblePct: 50, randomPct: 25 } },
            { id: "disk-2", sizeBytes: "1MiB", content: { kind: "empty" } },
          ],
        },
        ...(extra.image ? [{ id: "vm-img", disks: [{ id: "disk-1", content: { kind: "image", path: extra.image } }] }] : []),
      ],
    },
    { baseDir: dir },
  );
}

async function openHv(cfg = config()): Promise<SimHypervisor> {
  const hv = await SimHypervisor.open(cfg, log);
  open.push(hv);
  return hv;
}

function pattern(byte: number, length: number): Buffer {
  return Buffer.alloc(length, byte);
}

describe("hypervisor simulator snapshots", () => {
  it("creates disks under <datastore>/<vmId>/<diskId>.raw and lists them in the inventory", async () => {
    const hv = await openHv();
    const inventory = await hv.inventory();
    expect(inventory.vms.map((v) => v.id)).toEqual(["vm-1"]);
    expect(inventory.vms[0]!.disks.map((d) => [d.id, d.sizeBytes, d.datastoreId])).toEqual([
      ["disk-1", 4 * MiB, "ds-1"],
      ["disk-2", MiB, "ds-1"],
    ]);
    expect(inventory.vms[0]!.guestAgent).toBe(false);
    expect(statSync(join(dir, "ds", "vm-1", "disk-1.raw")).size).toBe(4 * MiB);
    expect(inventory.datastores[0]!.freeBytes).toBeLessThan(inventory.datastores[0]!.capacityBytes);
  });

  it("keeps the base file at its snapshot-time content while writes go to the delta", async () => {
    const hv = await openHv();
    const basePath = join(dir, "ds", "vm-1", "disk-1.raw");
    const before = readFileSync(basePath);
    const snapshot = await hv.createSnapshot({ vmId: "vm-1", name: "s1", quiesced: false });
    expect(snapshot.disks.map((d) => d.transport)).toEqual([
      { mode: "file", path: basePath },
      { mode: "file", path: join(dir, "ds", "vm-1", "disk-2.raw") },
    ]);
    expect(statSync(basePath).mode & 0o222).toBe(0); // frozen base is read-only

    // An aligned chunk, a write straddling two chunks, and a small write inside a chunk.
    await hv.write("vm-1", "disk-1", 0, pattern(0xa1, DELTA_CHUNK_BYTES));
    await hv.write("vm-1", "disk-1", 3 * DELTA_CHUNK_BYTES - 100, pattern(0xb2, 300));
    await hv.write("vm-1", "disk-1", 10 * DELTA_CHUNK_BYTES + 7, pattern(0xc3, 5));

    expect(readFileSync(basePath).equals(before)).toBe(true);
    const seen = await hv.read("vm-1", "disk-1", 0, 4 * MiB);
    const expected = Buffer.from(before);
    expected.fill(0xa1, 0, DELTA_CHUNK_BYTES);
    expected.fill(0xb2, 3 * DELTA_CHUNK_BYTES - 100, 3 * DELTA_CHUNK_BYTES + 200);
    expected.fill(0xc3, 10 * DELTA_CHUNK_BYTES + 7, 10 * DELTA_CHUNK_BYTES + 12);
    expect(seen.equals(expected)).toBe(true);

    const { mergedBytes } = await hv.removeSnapshot({ vmId: "vm-1", snapshotId: snapshot.id });
    expect(mergedBytes).toBe(4 * DELTA_CHUNK_BYTES); // chunks 0, 2, 3 and 10
    expect(readFileSync(basePath).equals(expected)).toBe(true);
    expect(statSync(basePath).mode & 0o200).not.toBe(0);
    expect(existsSync(join(dir, "ds", "vm-1", `disk-1.delta-${snapshot.id}.raw`))).toBe(false);
  });

  it("retains the snapshot-time content when the delta is not empty, and the base itself when it is", async () => {
    const hv = await openHv();
    const basePath = join(dir, "ds", "vm-1", "disk-1.raw");
    const atSnapshot = readFileSync(basePath);
    const snapshot = await hv.createSnapshot({ vmId: "vm-1", name: "s1", quiesced: true, sessionId: "sess-1" });
    expect(hv.snapshotImages("vm-1", snapshot.id)).toEqual([
      { diskId: "disk-1", path: basePath },
      { diskId: "disk-2", path: join(dir, "ds", "vm-1", "disk-2.raw") },
    ]);
    await hv.write("vm-1", "disk-1", MiB, pattern(0x5a, 128 * 1024));
    await hv.removeSnapshot({ vmId: "vm-1", snapshotId: snapshot.id });
    const images = hv.snapshotImages("vm-1", snapshot.id);
    const retained = images.find((i) => i.diskId === "disk-1")!.path;
    expect(retained).toBe(join(dir, "ds", "vm-1", `disk-1.snap-${snapshot.id}.raw`));
    expect(readFileSync(retained).equals(atSnapshot)).toBe(true);
    expect(readFileSync(basePath).equals(atSnapshot)).toBe(false);
    // The retained copy stays sparse: zero blocks are not written out.
    expect(statSync(retained).blocks * 512).toBeLessThanOrEqual(statSync(basePath).blocks * 512 + 128 * 1024);
    expect(images.find((i) => i.diskId === "disk-2")!.path).toBe(join(dir, "ds", "vm-1", "disk-2.raw"));
  });

  it("refuses a second snapshot of a VM, and unknown VMs and snapshots", async () => {
    const hv = await openHv();
    const snapshot = await hv.createSnapshot({ vmId: "vm-1", name: "s1", quiesced: false });
    await expect(hv.createSnapshot({ vmId: "vm-1", name: "s2", quiesced: false })).rejects.toSatisfy((e) => isFerryError(e, "conflict"));
    await expect(hv.createSnapshot({ vmId: "vm-9", name: "s", quiesced: false })).rejects.toSatisfy((e) => isFerryError(e, "not_found"));
    await expect(hv.removeSnapshot({ vmId: "vm-1", snapshotId: "snap-nope" })).rejects.toSatisfy((e) => isFerryError(e, "not_found"));
    expect(() => hv.snapshotImages("vm-1", "snap-nope")).toThrow(/no images/);
    await hv.removeSnapshot({ vmId: "vm-1", snapshotId: snapshot.id });
    await expect(hv.removeSnapshot({ vmId: "vm-1", snapshotId: snapshot.id })).rejects.toSatisfy((e) => isFerryError(e, "not_found"));
  });

  it("serializes writes with snapshot creation: every write lands wholly in the base or wholly in the delta", async () => {
    const hv = await openHv();
    const basePath = join(dir, "ds", "vm-1", "disk-2.raw");
    const writes = Array.from({ length: 16 }, (_, i) => hv.write("vm-1", "disk-2", i * DELTA_CHUNK_BYTES, pattern(i + 1, DELTA_CHUNK_BYTES)));
    const snapshotting = hv.createSnapshot({ vmId: "vm-1", name: "mid", quiesced: false });
    const later = Array.from({ length: 16 }, (_, i) => hv.write("vm-1", "disk-2", i * DELTA_CHUNK_BYTES, pattern(0xf0, DELTA_CHUNK_BYTES)));
    await Promise.all([...writes, snapshotting, ...later]);
    const base = readFileSync(basePath);
    for (let i = 0; i < 16; i++) {
      // Writes issued before the snapshot are in the base, those after are not.
      expect(base.subarray(i * DELTA_CHUNK_BYTES, (i + 1) * DELTA_CHUNK_BYTES).equals(pattern(i + 1, DELTA_CHUNK_BYTES))).toBe(true);
    }
    // ...and the guest reads what was written after it.
    expect((await hv.read("vm-1", "disk-2", 0, 16 * DELTA_CHUNK_BYTES)).equals(pattern(0xf0, 16 * DELTA_CHUNK_BYTES))).toBe(true);
    expect(hv.status().vms[0]).toMatchObject({ vmId: "vm-1", bytesWritten: 32 * DELTA_CHUNK_BYTES, bytesWrittenDuringSnapshot: 16 * DELTA_CHUNK_BYTES });
  });

  it("finds its snapshots again after a restart and commits them then", async () => {
    const first = await openHv();
    const basePath = join(dir, "ds", "vm-1", "disk-1.raw");
    const atSnapshot = readFileSync(basePath);
    const snapshot = await first.createSnapshot({ vmId: "vm-1", name: "s1", quiesced: false, sessionId: "sess-9" });
    await first.write("vm-1", "disk-1", 0, pattern(0x77, DELTA_CHUNK_BYTES));
    await first.close();
    open = open.filter((h) => h !== first);

    const second = await openHv();
    expect(second.listSnapshots()).toEqual([expect.objectContaining({ id: snapshot.id, vmId: "vm-1", sessionId: "sess-9" })]);
    expect(readFileSync(basePath).equals(atSnapshot)).toBe(true); // not regenerated, not merged
    expect((await second.read("vm-1", "disk-1", 0, 4)).equals(pattern(0x77, 4))).toBe(true);
    const { mergedBytes } = await second.removeSnapshot({ vmId: "vm-1", snapshotId: snapshot.id });
    expect(mergedBytes).toBe(DELTA_CHUNK_BYTES);
    expect(readFileSync(basePath).subarray(0, DELTA_CHUNK_BYTES).equals(pattern(0x77, DELTA_CHUNK_BYTES))).toBe(true);
    expect(second.listSnapshots()).toEqual([]);
  });

  it("attaches an image read-only: writes and workloads are refused, snapshots work, the file never changes", async () => {
    const imagePath = join(dir, "image.raw");
    const content = Buffer.alloc(2 * MiB, 0x3c);
    writeFileSync(imagePath, content, { mode: 0o644 });
    const hv = await openHv(config({ image: imagePath }));
    const vm = (await hv.inventory()).vms.find((v) => v.id === "vm-img")!;
    expect(vm.disks[0]!.sizeBytes).toBe(2 * MiB);
    await expect(hv.write("vm-img", "disk-1", 0, pattern(1, 512))).rejects.toSatisfy((e) => isFerryError(e, "conflict"));
    expect(() => hv.setWorkload("vm-img", MiB, 65536)).toThrow(/read-only/);
    const snapshot = await hv.createSnapshot({ vmId: "vm-img", name: "s", quiesced: false });
    expect(snapshot.disks[0]!.transport).toEqual({ mode: "file", path: imagePath });
    expect((await hv.removeSnapshot({ vmId: "vm-img", snapshotId: snapshot.id })).mergedBytes).toBe(0);
    expect(hv.snapshotImages("vm-img", snapshot.id)).toEqual([{ diskId: "disk-1", path: imagePath }]);
    expect(readFileSync(imagePath).equals(content)).toBe(true);
    expect(statSync(imagePath).mode & 0o777).toBe(0o644);
  });

  it("makes new VMs with empty sparse disks and writable transports, kept across restarts", async () => {
    const hv = await openHv();
    const created = await hv.createVm({ name: "restored", guestOs: "linux", tags: ["restored"], disks: [{ label: "a", sizeBytes: 8 * MiB }, { label: "b", sizeBytes: MiB }] });
    expect(created.vm).toMatchObject({ name: "restored", hostId: "host-1", powerState: "poweredOff", guestAgent: false });
    expect(created.disks).toHaveLength(2);
    const path = created.disks[0]!.transport.path;
    expect(statSync(path).size).toBe(8 * MiB);
    expect(statSync(path).blocks).toBe(0);
    writeFileSync(path, pattern(9, 8 * MiB));
    await hv.close();
    open = [];
    const again = await openHv();
    expect((await again.inventory()).vms.map((v) => v.id)).toContain(created.vm.id);
    expect((await again.read(created.vm.id, "disk-1", 0, 3)).equals(pattern(9, 3))).toBe(true);
    await expect(again.createVm({ name: "x", guestOs: "linux", tags: [], datastoreId: "ds-9", disks: [{ label: "a", sizeBytes: MiB }] })).rejects.toSatisfy((e) =>
      isFerryError(e, "not_found"),
    );
  });

  it("runs a workload that writes at about the requested rate, into the delta while a snapshot exists", async () => {
    const hv = await openHv();
    hv.setWorkload("vm-1", 4 * MiB, 64 * 1024);
    await new Promise((r) => setTimeout(r, 500));
    const snapshot = await hv.createSnapshot({ vmId: "vm-1", name: "w", quiesced: false });
    await new Promise((r) => setTimeout(r, 500));
    hv.setWorkload("vm-1", 0, 64 * 1024);
    const status = hv.status().vms.find((v) => v.vmId === "vm-1")!;
    expect(status.snapshotId).toBe(snapshot.id);
    expect(status.workloadBytesPerSec).toBe(0);
    // ~4 MiB over ~1 s, with a burst allowance; loose bounds for a busy machine.
    expect(status.bytesWritten).toBeGreaterThan(2 * MiB);
    expect(status.bytesWritten).toBeLessThan(7 * MiB);
    expect(status.bytesWrittenDuringSnapshot).toBeGreaterThan(0.5 * MiB);
    expect(status.bytesWrittenDuringSnapshot).toBeLessThan(status.bytesWritten);
    const { mergedBytes } = await hv.removeSnapshot({ vmId: "vm-1", snapshotId: snapshot.id });
    expect(mergedBytes).toBeGreaterThan(0);
    expect(mergedBytes).toBeLessThanOrEqual(status.bytesWrittenDuringSnapshot);
  });
});
