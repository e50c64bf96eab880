import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats } from "../../lib/nats.js";
import { projectRoot } from "../../lib/paths.js";
import { request } from "../../lib/rpc.js";
import {
  InventoryRequest,
  InventoryResponse,
  SnapshotCreateRequest,
  SnapshotCreateResponse,
  SnapshotListRequest,
  SnapshotListResponse,
  SnapshotRemoveRequest,
  SnapshotRemoveResponse,
  hypervisorSubjects,
} from "../../protocol/mod.js";
import { startTestNats } from "../harness/nats.js";

const HV = "sim-cli";
let nats: Awaited<ReturnType<typeof startTestNats>>;
let nc: NatsConnection;
let dir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  nats = await startTestNats();
  nc = await connectNats({ servers: nats.url, name: "simulator-cli-test" });
  dir = mkdtempSync(join(tmpdir(), "ferry-simcli-"));
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  await nc?.close();
  await nats?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs `ferry <args>` from source (tsx), as the built CLI would run. */
function ferry(args: string[]): { child: ChildProcess; exited: Promise<number | null>; stderr: () => string; stdout: () => string } {
  const child = spawn(process.execPath, ["--import", "tsx", join(projectRoot(), "cli", "main.ts"), ...args], {
    cwd: projectRoot(),
    env: { ...process.env, FERRY_LOG_PRETTY: "0", FERRY_LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stderr = "";
  let stdout = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, exited, stderr: () => stderr, stdout: () => stdout };
}

async function waitForInventory(): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await request(nc, hypervisorSubjects.inventory(HV), InventoryRequest, {}, InventoryResponse, { timeoutMs: 1_000 });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

describe("ferry simulator command", () => {
  it("explains itself in --help", async () => {
    const run = ferry(["simulator", "--help"]);
    expect(await run.exited).toBe(0);
    expect(run.stdout()).toContain("--config <file>");
    expect(run.stdout()).toContain("SIGTERM");
  });

  it("exits 1 naming the field when the config is invalid", async () => {
    const path = join(dir, "bad.yaml");
    writeFileSync(path, "hypervisorId: sim-bad\nhosts: [{ id: host-1 }]\ndatastores: [{ id: ds-1, path: ds, capacityBytes: 12XB }]\n");
    const run = ferry(["--nats", nats.url, "simulator", "--config", path]);
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toContain("datastores[0].capacityBytes");
  });

  it("serves over NATS, stops cleanly on SIGTERM and finds its snapshot again after a restart", async () => {
    const path = join(dir, "sim.yaml");
    writeFileSync(
      path,
      [
        `hypervisorId: ${HV}`,
        "hosts: [{ id: host-1 }]",
        "datastores: [{ id: ds-1, path: ./ds, capacityBytes: 1GiB }]",
        "vms:",
        "  - id: vm-1",
        "    disks:",
        "      - { id: disk-1, sizeBytes: 4MiB, content: { kind: generated, seed: 1, zeroPct: 30, compressiblePct: 40, randomPct: 30 } }",
        "    guest: { os: linux, applications: [{ name: pg, kind: database, freezeMs: 10 }] }",
      ].join("\n"),
    );
    const first = ferry(["--nats", nats.url, "simulator", "--config", path]);
    await waitForInventory();
    const { snapshot } = await request(nc, hypervisorSubjects.snapshotCreate(HV), SnapshotCreateRequest, { vmId: "vm-1", name: "before-restart" }, SnapshotCreateResponse);
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    expect(first.stderr()).toContain("simulator stopped");

    const second = ferry(["--nats", nats.url, "simulator", "--config", path]);
    await waitForInventory();
    const { snapshots } = await request(nc, hypervisorSubjects.snapshotList(HV), SnapshotListRequest, {}, SnapshotListResponse);
    expect(snapshots.map((s) => s.id)).toEqual([snapshot.id]);
    expect((await request(nc, hypervisorSubjects.snapshotRemove(HV), SnapshotRemoveRequest, { vmId: "vm-1", snapshotId: snapshot.id }, SnapshotRemoveResponse)).mergedBytes).toBe(0);
    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
  });
});
