import type { Command } from "commander";
import { stringify as toYaml } from "yaml";
import { ErrorCode, FerryError, type JobSpec } from "../../protocol/mod.js";
import { withContext } from "../context.js";
import { formatBytes, formatRate, printJson, renderTable } from "../format.js";
import { readJobFile } from "../job-file.js";
import { reportTriggered, triggerJob } from "../sessions.js";

/** `ferry job …` (options in cli/commands/job.ts). */

function selectorText(job: JobSpec): string {
  return job.vms
    .map((s) => (s.id !== undefined ? `id=${s.id}` : s.name !== undefined ? `name=${s.name}` : `tag=${s.tag}`) + (s.guestProcessing ? "+guest" : ""))
    .join(" ");
}

export async function jobCreate(opts: { file: string; json?: boolean }, cmd: Command): Promise<void> {
  const spec = readJobFile(opts.file);
  await withContext(cmd, async (ctx) => {
    const now = Date.now();
    const existing = await ctx.config.getJob(spec.id);
    for (const [what, id, get] of [
      ["hypervisor", spec.hypervisor, (x: string) => ctx.config.getHypervisor(x)],
      ["repository", spec.repository, (x: string) => ctx.config.getRepository(x)],
    ] as const) {
      if (!(await get(id))) process.stderr.write(`ferry: warning: ${what} ${id} is not in the configuration store yet\n`);
    }
    await ctx.config.putJob({ job: spec, createdAt: existing?.createdAt ?? now, updatedAt: now });
    if (opts.json) printJson(spec);
    else process.stdout.write(`job ${spec.id} ${existing ? "updated" : "created"} (${spec.vms.length} selector${spec.vms.length === 1 ? "" : "s"})\n`);
  });
}

export async function jobList(opts: { json?: boolean }, cmd: Command): Promise<void> {
  await withContext(cmd, async (ctx) => {
    const jobs = (await ctx.config.listJobs()).sort((a, b) => a.job.id.localeCompare(b.job.id));
    if (opts.json) return printJson(jobs.map((j) => j.job));
    if (jobs.length === 0) return void process.stdout.write("no jobs\n");
    const rows = jobs.map(({ job: j }) => [
      j.id,
      j.name ?? "-",
      j.hypervisor,
      j.repository,
      selectorText(j),
      formatBytes(j.blockSize),
      j.compression,
      j.guestProcessing.enabled ? "on" : "off",
      String(j.priority),
    ]);
    process.stdout.write(`${renderTable(["id", "name", "hypervisor", "repository", "vms", "block", "compression", "guest", "priority"], rows)}\n`);
  });
}

export async function jobShow(jobId: string, opts: { json?: boolean }, cmd: Command): Promise<void> {
  await withContext(cmd, async (ctx) => {
    const record = await ctx.config.getJob(jobId);
    if (!record) throw new FerryError(ErrorCode.NotFound, `job ${jobId} not found`, { retryable: false });
    if (opts.json) return printJson(record);
    const j = record.job;
    process.stdout.write(toYaml(j));
    process.stdout.write(
      `# block size ${formatBytes(j.blockSize)}${j.throttleBytesPerSec > 0 ? `, throttled to ${formatRate(j.throttleBytesPerSec)}` : ""}; created ${new Date(record.createdAt).toISOString()}, updated ${new Date(record.updatedAt).toISOString()}\n`,
    );
  });
}

export async function jobStart(jobId: string, opts: { wait?: boolean; requestId?: string; reason?: string; json?: boolean }, cmd: Command): Promise<void> {
  await withContext(cmd, async (ctx) => {
    const triggered = await triggerJob(ctx, jobId, { ...(opts.requestId ? { requestId: opts.requestId } : {}), ...(opts.reason ? { reason: opts.reason } : {}) });
    if (triggered.duplicate) process.stderr.write(`ferry: request ${triggered.requestId} was already made; following its session\n`);
    await reportTriggered(ctx, triggered, opts);
  });
}
