import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { projectRoot } from "../../lib/paths.js";
import { generateDiskImage } from "../../simulators/content.js";
import { demoSimulatorConfig } from "../../simulators/demo.js";
import { MiB, contentSpecOf, sha256File } from "../harness/stack.js";

/** `ferry demo` as an operator runs it: a child process, its own stack, one JSON object on stdout. */

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runFerry(args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    // The demo must start its own private nats-server, never use one from the environment.
    delete env.NATS_URL;
    const child = spawn(process.execPath, [join(projectRoot(), "bin", "ferry.js"), ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGINT"), timeoutMs);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

interface DemoDiskJson {
  vm: string;
  vmId: string;
  disk: string;
  sourceImage: string;
  restoredImage: string;
  sha256: string;
  sourceSha256: string;
  sizeBytes: number;
  identical: boolean;
}

describe("ferry demo", () => {
  const workdir = mkdtempSync(join(tmpdir(), "ferry-e2e-demo-"));
  afterAll(() => rmSync(workdir, { recursive: true, force: true }));

  it("exits 0 and prints one JSON report whose restored disks are byte-identical to their sources", async () => {
    // By default the demo keeps the disks and restored files its report names: this test re-hashes them.
    const run = await runFerry(["demo", "--vms", "3", "--disk-size", "16MiB", "--json", "--workdir", workdir], 90_000);
    expect(run.code, `ferry demo failed; stderr:\n${run.stderr.slice(-4000)}`).toBe(0);

    // Exactly one JSON value, an object, on stdout.
    const report = JSON.parse(run.stdout) as { ok: boolean; disks: DemoDiskJson[]; problems: string[]; session: { result: string } };
    expect(typeof report).toBe("object");
    expect(Array.isArray(report)).toBe(false);
    expect(report.ok).toBe(true);
    expect(report.problems).toEqual([]);
    expect(report.session.result).toBe("success");
    expect(report.disks.map((d) => `${d.vmId}/${d.disk}`).sort()).toEqual(["vm-1/disk-1", "vm-1/disk-2", "vm-2/disk-1", "vm-3/disk-1"]);

    // The demo's own inventory, regenerated apart from the stack, is what the disks must hold.
    const config = demoSimulatorConfig({ dir: join(workdir, "reference"), vms: 3, diskSizeBytes: 16 * MiB, seed: 1 });
    mkdirSync(join(workdir, "reference"), { recursive: true });
    for (const disk of report.disks) {
      expect(existsSync(disk.sourceImage), disk.sourceImage).toBe(true);
      expect(existsSync(disk.restoredImage), disk.restoredImage).toBe(true);
      expect(disk.restoredImage).not.toBe(disk.sourceImage);
      const [source, restored] = await Promise.all([sha256File(disk.sourceImage), sha256File(disk.restoredImage)]);
      expect(restored, `${disk.vmId}/${disk.disk}`).toBe(source);
      expect(disk.sha256).toBe(restored);
      expect(disk.sourceSha256).toBe(source);
      expect(disk.identical).toBe(true);

      const { spec, sizeBytes } = contentSpecOf(config, disk.vmId, disk.disk);
      expect(disk.sizeBytes).toBe(sizeBytes);
      const reference = join(workdir, "reference", `${disk.vmId}-${disk.disk}.raw`);
      await generateDiskImage(reference, sizeBytes, spec, MiB, { fsync: false });
      expect(restored, `${disk.vmId}/${disk.disk} against the generated content`).toBe(await sha256File(reference));
    }
  });
});
