import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

export interface PeerResult {
  name: string;
  version: string;
  backupSeconds?: number;
  restoreSeconds?: number;
  restoredIdentical?: boolean;
  /** Why it did not run (not installed, failed). */
  skipped?: string;
}

function which(cmd: string): string | undefined {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): number {
  const started = performance.now();
  const r = spawnSync(cmd, args, { env, cwd, stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr.slice(-500)}`);
  return (performance.now() - started) / 1000;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

const INSTALL_HINT = "install it with `apt-get install restic borgbackup` (Debian packages); the benchmark installs nothing itself";

/** restic 0.14+: repository in `dir`, compression auto (its default), no password prompt. */
export async function runRestic(image: string, dir: string, sourceSha: string): Promise<PeerResult> {
  if (!which("restic")) return { name: "restic", version: "-", skipped: `restic not found; ${INSTALL_HINT}` };
  const env = { ...process.env, RESTIC_REPOSITORY: join(dir, "restic-repo"), RESTIC_PASSWORD: "ferry-bench", RESTIC_CACHE_DIR: join(dir, "restic-cache") };
  const version = spawnSync("restic", ["version"], { encoding: "utf8" }).stdout.trim();
  try {
    timed("restic", ["init"], env);
    const backupSeconds = timed("restic", ["backup", image], env);
    const target = join(dir, "restic-restore");
    mkdirSync(target, { recursive: true });
    const restoreSeconds = timed("restic", ["restore", "latest", "--target", target], env);
    const restoredIdentical = (await sha256File(join(target, image))) === sourceSha;
    return { name: "restic", version, backupSeconds, restoreSeconds, restoredIdentical };
  } catch (err) {
    return { name: "restic", version, skipped: (err as Error).message };
  }
}

/** borg 1.2: unencrypted repository, `--compression lz4` as the issue asks. */
export async function runBorg(image: string, dir: string, sourceSha: string): Promise<PeerResult> {
  if (!which("borg")) return { name: "borg", version: "-", skipped: `borg not found; ${INSTALL_HINT}` };
  const repo = join(dir, "borg-repo");
  const env = { ...process.env, BORG_REPO: repo, BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes", BORG_BASE_DIR: join(dir, "borg-base") };
  const version = spawnSync("borg", ["--version"], { encoding: "utf8" }).stdout.trim();
  try {
    timed("borg", ["init", "--encryption", "none"], env);
    const backupSeconds = timed("borg", ["create", "--compression", "lz4", "::full", image], env);
    const target = join(dir, "borg-restore");
    mkdirSync(target, { recursive: true });
    const restoreSeconds = timed("borg", ["extract", "::full"], env, target);
    const restoredIdentical = (await sha256File(join(target, image.replace(/^\//, "")))) === sourceSha;
    return { name: "borg", version, backupSeconds, restoreSeconds, restoredIdentical };
  } catch (err) {
    return { name: "borg", version, skipped: (err as Error).message };
  }
}
