import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseSimulatorConfig } from "../../simulators/config.js";
import { demoSimulatorConfig } from "../../simulators/demo.js";

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), "ferry-simdemo-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("demo simulator config", () => {
  it("has two hosts, one datastore under the folder, and vm-1 app-aware with two disks", () => {
    const config = demoSimulatorConfig({ dir, diskSizeBytes: 64 * MiB, seed: 5 });
    expect(config.hosts.map((h) => h.id)).toEqual(["host-1", "host-2"]);
    expect(config.datastores).toHaveLength(1);
    expect(config.datastores[0]!.path.startsWith(dir)).toBe(true);
    expect(config.retainSnapshotImages).toBe(true);
    expect(config.vms.map((v) => v.id)).toEqual(["vm-1", "vm-2", "vm-3"]);
    const [vm1, vm2] = config.vms;
    expect(vm1!.disks.map((d) => d.sizeBytes)).toEqual([64 * MiB, 16 * MiB]);
    expect(vm1!.guest?.applications).toEqual([expect.objectContaining({ kind: "database", freezeMs: 100 })]);
    expect(vm2!.guest).toBeUndefined();
    expect(config.vms.every((v) => v.workload === undefined)).toBe(true);
    for (const disk of config.vms.flatMap((v) => v.disks)) {
      expect(disk.content).toMatchObject({ kind: "generated", zeroPct: 30, compressiblePct: 40, randomPct: 30 });
    }
    // Every disk gets its own seed, so disks do not share blocks.
    const seeds = config.vms.flatMap((v) => v.disks.map((d) => (d.content.kind === "generated" ? d.content.seed : "")));
    expect(new Set(seeds).size).toBe(seeds.length);
    // It survives being written as a config file and read back.
    expect(parseSimulatorConfig(JSON.parse(JSON.stringify(config)))).toEqual(config);
  });

  it("attaches images read-only: one VM per image, or round-robin over the VMs asked for", () => {
    const images = ["a", "b", "c"].map((name) => {
      const path = join(dir, `${name}.raw`);
      writeFileSync(path, Buffer.alloc(MiB));
      return path;
    });
    const perImage = demoSimulatorConfig({ dir, images });
    expect(perImage.vms.map((v) => v.disks.map((d) => d.content))).toEqual(images.map((path) => [{ kind: "image", path }]));
    const two = demoSimulatorConfig({ dir, images, vms: 2 });
    expect(two.vms.map((v) => v.disks.map((d) => (d.content.kind === "image" ? d.content.path : "")))).toEqual([[images[0], images[2]], [images[1]]]);
    const five = demoSimulatorConfig({ dir, images, vms: 5 });
    expect(five.vms.every((v) => v.disks.length === 1 && v.disks[0]!.content.kind === "image")).toBe(true);
  });
});
