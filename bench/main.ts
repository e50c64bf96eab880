import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, totalmem, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { spawnSync } from "node:child_process";
import { Command } from "commander";
import { generateDiskImage } from "../simulators/content.js";
import { parseSize } from "../simulators/size.js";
import { runCeiling } from "./ceiling.js";
import { runFerry } from "./ferry-run.js";
import { runBorg, runRestic, sha256File, type PeerResult } from "./peers.js";

/**
 * `npm run bench [-- --json]`: one run measures Ferry's full backup and restore through every
 * actor on a real nats-server, the single-process ceiling, restic and borg on the same seeded
 * image, and the peak RSS of every process; then the movers' RSS on a large sparse disk.
 */
const program = new Command("ferry-bench")
  .description("Ferry's benchmark: Ferry vs the single-process ceiling vs restic and borg on one seeded image")
  .option("--json", "print one JSON object on stdout (progress on stderr)")
  .option("--size <size>", "image size", "2GiB")
  .option("--sparse-size <size>", "size of the sparse disk for the memory check (0 skips it)", "20GiB")
  .option("--workdir <dir>", "where images, repositories and restores go (default: a temp dir, removed after)")
  .option("--seed <seed>", "content seed", "20261126")
  .option("--skip-peers", "do not run restic and borg")
  .option("--skip-ceiling", "do not run the single-process ceiling")
  .option("--runs <n>", "Ferry backup+restore runs, each on a fresh stack; the median run is reported", "1")
  .option("--warm-memory <size>", "touch this much memory first (0 skips): on VMs whose memory is backed lazily, the first use of a page is ~10x slower and would penalise whichever tool runs first", "8GiB")
  .parse();

const opts = program.opts<{ json?: boolean; size: string; sparseSize: string; workdir?: string; seed: string; skipPeers?: boolean; skipCeiling?: boolean; runs: string; warmMemory: string }>();
const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
const MB = 1e6;

/** Touches `bytes` of memory in a child process, which then exits and leaves the pages to the page cache. */
function warmMemory(bytes: number): void {
  if (bytes <= 0) return;
  const started = performance.now();
  const script = `const b = []; for (let i = 0; i < ${Math.ceil(bytes / 2 ** 28)}; i++) b.push(Buffer.alloc(2 ** 28, 1));`;
  const r = spawnSync(process.execPath, ["--max-old-space-size=256", "-e", script], { stdio: "inherit" });
  log(`warmed ${(bytes / 2 ** 30).toFixed(1)} GiB of memory in ${((performance.now() - started) / 1000).toFixed(1)} s${r.status === 0 ? "" : " (warm-up failed; results may be noisy)"}`);
}

async function main(): Promise<void> {
  warmMemory(parseSize(opts.warmMemory));
  const workdir = resolve(opts.workdir ?? mkdtempSync(join(tmpdir(), "ferry-bench-")));
  mkdirSync(workdir, { recursive: true });
  const sizeBytes = parseSize(opts.size);
  const image = join(workdir, "bench-image.raw");
  log(`image ${image} (${opts.size}: 30% zero, 40% compressible, 30% random 1 MiB blocks, interleaved, seed ${opts.seed})`);
  await generateDiskImage(image, sizeBytes, { seed: opts.seed, zeroPct: 30, compressiblePct: 40, randomPct: 30 });
  const sourceSha = await sha256File(image);

  let ceiling: Awaited<ReturnType<typeof runCeiling>> | undefined;
  if (!opts.skipCeiling) {
    log("ceiling: single-process loop");
    const ceilingDir = join(workdir, "ceiling");
    mkdirSync(ceilingDir, { recursive: true });
    ceiling = await runCeiling(image, ceilingDir);
    rmSync(ceilingDir, { recursive: true, force: true });
  }

  const runs: Array<{ run: Awaited<ReturnType<typeof runFerry>>; restoredIdentical: boolean }> = [];
  for (let i = 1; i <= Math.max(1, Number(opts.runs)); i++) {
    log(`ferry run ${i}: full backup and restore through all actors`);
    const run = await runFerry(image, join(workdir, "ferry"), { log });
    runs.push({ run, restoredIdentical: (await sha256File(run.restoredPath)) === sourceSha });
    if (!process.env.FERRY_BENCH_KEEP) rmSync(join(workdir, "ferry"), { recursive: true, force: true });
  }
  // The median run by backup time stands for Ferry; every run is in the JSON.
  const ordered = [...runs].sort((a, b) => a.run.backupSeconds - b.run.backupSeconds);
  const { run: ferry } = ordered[Math.floor((ordered.length - 1) / 2)]!;
  const restoredIdentical = runs.every((r) => r.restoredIdentical);

  const peers: PeerResult[] = [];
  if (!opts.skipPeers) {
    log("restic");
    peers.push(await runRestic(image, join(workdir, "peers"), sourceSha));
    log("borg");
    peers.push(await runBorg(image, join(workdir, "peers"), sourceSha));
    rmSync(join(workdir, "peers"), { recursive: true, force: true });
  }

  let sparse: { sizeBytes: number; backupSeconds: number; peakRssMiB: Record<string, number> } | undefined;
  const sparseBytes = parseSize(opts.sparseSize);
  if (sparseBytes > 0) {
    log(`sparse disk: ${opts.sparseSize} with 2% data, for the movers' memory`);
    const sparseImage = join(workdir, "sparse-image.raw");
    await generateDiskImage(sparseImage, sparseBytes, { seed: opts.seed, zeroPct: 98, compressiblePct: 1, randomPct: 1 });
    const run = await runFerry(sparseImage, join(workdir, "ferry-sparse"), { log });
    sparse = { sizeBytes: sparseBytes, backupSeconds: run.backupSeconds, peakRssMiB: run.peakRssMiB };
    rmSync(join(workdir, "ferry-sparse"), { recursive: true, force: true });
    rmSync(sparseImage, { force: true });
  }

  const rate = (seconds: number | undefined) => (seconds ? sizeBytes / MB / seconds : undefined);
  const ferryBackup = rate(ferry.backupSeconds)!;
  const ferryRestore = rate(ferry.restoreSeconds)!;
  const fastestPeerBackup = Math.max(0, ...peers.map((p) => rate(p.backupSeconds) ?? 0));
  const fastestPeerRestore = Math.max(0, ...peers.map((p) => rate(p.restoreSeconds) ?? 0));
  const result = {
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 1024 ** 3), node: process.version },
    image: { sizeBytes, seed: opts.seed, mix: "30% zero, 40% compressible, 30% random", sha256: sourceSha },
    ferry: {
      backupMBps: ferryBackup,
      backupSeconds: ferry.backupSeconds,
      restoreMBps: ferryRestore,
      restoreSeconds: ferry.restoreSeconds,
      restoredIdentical,
      stats: ferry.backup.stats,
      backupCpuSeconds: ferry.backupCpuSeconds,
      peakRssMiB: ferry.peakRssMiB,
    },
    runs: runs.map(({ run }) => ({ backupMBps: rate(run.backupSeconds), restoreMBps: rate(run.restoreSeconds), backupCpuSeconds: run.backupCpuSeconds })),
    ceiling: ceiling ? { MBps: rate(ceiling.seconds), seconds: ceiling.seconds, cpuSeconds: ceiling.cpuSeconds } : undefined,
    peers: peers.map((p) => ({ ...p, backupMBps: rate(p.backupSeconds), restoreMBps: rate(p.restoreSeconds) })),
    ratios: {
      ferryOverCeiling: ceiling ? ferryBackup / rate(ceiling.seconds)! : undefined,
      ferryOverFastestPeerBackup: fastestPeerBackup ? ferryBackup / fastestPeerBackup : undefined,
      ferryOverFastestPeerRestore: fastestPeerRestore ? ferryRestore / fastestPeerRestore : undefined,
    },
    sparse,
  };
  if (!opts.workdir) rmSync(workdir, { recursive: true, force: true });

  if (opts.json) {
    process.stdout.write(JSON.stringify(result) + "\n");
    return;
  }
  const f = (x: number | undefined, digits = 0) => (x === undefined ? "-" : x.toFixed(digits));
  const rows: string[][] = [
    ["Ferry (all actors, NATS)", f(ferryBackup), f(ferry.backupSeconds, 2), f(ferryRestore), f(ferry.restoreSeconds, 2), restoredIdentical ? "yes" : "NO"],
    ["ceiling (one process)", f(ceiling && rate(ceiling.seconds)), f(ceiling?.seconds, 2), "-", "-", "-"],
    ...peers.map((p) => [`${p.name} ${p.skipped ? `(skipped: ${p.skipped})` : p.version.split("\n")[0]}`, f(rate(p.backupSeconds)), f(p.backupSeconds, 2), f(rate(p.restoreSeconds)), f(p.restoreSeconds, 2), p.restoredIdentical === undefined ? "-" : p.restoredIdentical ? "yes" : "NO"]),
  ];
  const header = ["", "backup MB/s", "s", "restore MB/s", "s", "identical"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(`machine: ${result.machine.cpus} × ${result.machine.cpuModel}, ${result.machine.memoryGiB} GiB, Node ${process.version}`);
  console.log(`image: ${opts.size}, ${result.image.mix}; on the wire ${(ferry.backup.stats.transferredBytes / MB).toFixed(0)} MB, compression ${ferry.backup.stats.compressionRatio.toFixed(2)}x`);
  console.log(line(header));
  for (const r of rows) console.log(line(r));
  console.log(`Ferry/ceiling ${f(result.ratios.ferryOverCeiling, 2)}; Ferry/fastest peer: backup ${f(result.ratios.ferryOverFastestPeerBackup, 2)}x, restore ${f(result.ratios.ferryOverFastestPeerRestore, 2)}x`);
  if (runs.length > 1) console.log(`runs (backup / restore MB/s): ${runs.map(({ run }) => `${f(rate(run.backupSeconds))} / ${f(rate(run.restoreSeconds))}`).join(", ")}`);
  console.log(`backup CPU seconds: ${Object.entries(ferry.backupCpuSeconds).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  console.log(`peak RSS MiB (${opts.size} image): ${Object.entries(ferry.peakRssMiB).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  if (sparse) console.log(`peak RSS MiB (${opts.sparseSize} sparse disk, backup ${f(sparse.backupSeconds, 1)} s): ${Object.entries(sparse.peakRssMiB).map(([k, v]) => `${k} ${v}`).join(", ")}`);
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
