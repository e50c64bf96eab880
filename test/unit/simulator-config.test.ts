import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isFerryError } from "../../protocol/mod.js";
import { loadSimulatorConfig, parseSimulatorConfig } from "../../simulators/config.js";

const dir = mkdtempSync(join(tmpdir(), "ferry-simcfg-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function base(): Record<string, unknown> {
  return {
    hypervisorId: "sim-1",
    hosts: [{ id: "host-1", name: "esx-1" }],
    datastores: [{ id: "ds-1", name: "ds", path: "ds1", capacityBytes: "10GiB" }],
    vms: [
      {
        id: "vm-1",
        name: "web",
        hostId: "host-1",
        disks: [
          {
            id: "disk-1",
            label: "Hard disk 1",
            sizeBytes: "16MiB",
            datastoreId: "ds-1",
            content: { kind: "generated", seed: 7, zeroPct: 30, compressiblePct: 40, randomPct: 30 },
          },
        ],
        guest: { os: "linux", applications: [{ name: "pg", kind: "database", freezeMs: 50, writeBytesPerSec: "1MiB" }] },
      },
    ],
  };
}

function errorOf(raw: unknown): string {
  try {
    parseSimulatorConfig(raw);
  } catch (err) {
    expect(isFerryError(err, "bad_request")).toBe(true);
    return (err as Error).message;
  }
  throw new Error("config was accepted");
}

function withVm(change: (vm: Record<string, any>) => void): Record<string, unknown> {
  const raw = base();
  change((raw.vms as Record<string, any>[])[0]!);
  return raw;
}

describe("simulator config", () => {
  it("parses sizes given as strings and fills defaults", () => {
    const config = parseSimulatorConfig(base(), { baseDir: "/srv/sim" });
    expect(config.datastores[0]!.capacityBytes).toBe(10 * 1024 ** 3);
    expect(config.datastores[0]!.path).toBe("/srv/sim/ds1");
    expect(config.vms[0]!.disks[0]!.sizeBytes).toBe(16 * 1024 * 1024);
    expect(config.vms[0]!.guest!.applications[0]!.writeBytesPerSec).toBe(1024 * 1024);
    expect(config.vms[0]!.powerState).toBe("poweredOn");
    expect(config.retainSnapshotImages).toBe(false);
  });

  it("round-trips through JSON, so a parsed config can be written to a file and read again", () => {
    const config = parseSimulatorConfig(base(), { baseDir: "/srv/sim" });
    expect(parseSimulatorConfig(JSON.parse(JSON.stringify(config)))).toEqual(config);
  });

  it("names the field of a bad size", () => {
    const message = errorOf(withVm((vm) => (vm.disks[0].sizeBytes = "2XB")));
    expect(message).toContain("vms[0].disks[0].sizeBytes");
    expect(message).toContain('"2XB"');
  });

  it("names the field of a bad id, an unknown host and an unknown datastore", () => {
    expect(errorOf(withVm((vm) => (vm.id = "vm 1")))).toContain("vms[0].id");
    expect(errorOf(withVm((vm) => (vm.hostId = "host-9")))).toMatch(/vms\[0\]\.hostId: unknown host "host-9"/);
    expect(errorOf(withVm((vm) => (vm.disks[0].datastoreId = "ds-9")))).toMatch(/vms\[0\]\.disks\[0\]\.datastoreId: unknown datastore/);
  });

  it("names content whose percentages do not sum to 100 and a missing disk size", () => {
    expect(errorOf(withVm((vm) => (vm.disks[0].content.randomPct = 10)))).toMatch(/vms\[0\]\.disks\[0\]\.content: .*must be 100, got 80/);
    expect(errorOf(withVm((vm) => delete vm.disks[0].sizeBytes))).toContain("vms[0].disks[0].sizeBytes: required");
  });

  it("names unknown keys and unknown content kinds", () => {
    expect(errorOf(withVm((vm) => (vm.disks[0].sizeByte = 5)))).toMatch(/vms\[0\]\.disks\[0\]: .*"sizeByte"/);
    expect(errorOf(withVm((vm) => (vm.disks[0].content = { kind: "qcow2" })))).toContain("vms[0].disks[0].content.kind");
  });

  it("reports duplicate VM ids at the second one", () => {
    const raw = base();
    (raw.vms as unknown[]).push(structuredClone((raw.vms as unknown[])[0]));
    expect(errorOf(raw)).toContain('vms[1].id: duplicate VM id "vm-1"');
  });

  it("reads YAML and JSON files and resolves paths against the file's folder", async () => {
    const yamlPath = join(dir, "sim.yaml");
    writeFileSync(
      yamlPath,
      [
        "hypervisorId: sim-y",
        "retainSnapshotImages: true",
        "hosts: [{ id: host-1 }]",
        "datastores: [{ id: ds-1, path: ./store, capacityBytes: 1GiB }]",
        "vms:",
        "  - id: vm-1",
        "    disks:",
        "      - { id: disk-1, sizeBytes: 4MiB, content: { kind: empty } }",
        "      - { id: disk-2, content: { kind: image, path: images/a.raw } }",
      ].join("\n"),
    );
    const fromYaml = await loadSimulatorConfig(yamlPath);
    expect(fromYaml.datastores[0]!.path).toBe(join(dir, "store"));
    expect(fromYaml.vms[0]!.disks[1]!.content).toEqual({ kind: "image", path: join(dir, "images", "a.raw") });
    const jsonPath = join(dir, "sim.json");
    writeFileSync(jsonPath, JSON.stringify(base()));
    expect((await loadSimulatorConfig(jsonPath)).datastores[0]!.path).toBe(join(dir, "ds1"));
  });

  it("names the file when it cannot be parsed", async () => {
    const path = join(dir, "broken.json");
    writeFileSync(path, "{ not json");
    await expect(loadSimulatorConfig(path)).rejects.toThrow(/cannot parse simulator config .*broken\.json/);
    await expect(loadSimulatorConfig(join(dir, "missing.yaml"))).rejects.toThrow(/cannot read simulator config/);
  });
});
