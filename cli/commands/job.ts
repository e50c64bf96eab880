import { Command } from "commander";
import { stringify as toYaml } from "yaml";
import { ErrorCode, FerryError, type JobSpec } from "../../protocol/mod.js";
import { withContext } from "../context.js";
import { formatBytes, formatRate, printJson, renderTable } from "../format.js";
import { readJobFile } from "../job-file.js";
import { reportTriggered, triggerJob } from "../sessions.js";

function selectorText(job: JobSpec): string {
  return job.vms
    .map((s) => (s.id !== undefined ? `id=${s.id}` : s.name !== undefined ? `name=${s.name}` : `tag=${s.tag}`) + (s.guestProcessing ? "+guest" : ""))
    .join(" ");
}

export function registerJobCommand(program: Command): void {
  const job = program.command("job").description("backup jobs: create, list, show, start");

  job
    .command("create")
    .description("create or replace a job from a YAML or JSON file (see JobSpec in protocol/config.ts)")
    .requiredOption("-f, --file <path>", "job file, YAML or JSON (`-` reads standard input)")
    .option("--json", "print the stored job as JSON")
    .addHelpText(
      "after",
      `
Example job file:
  id: daily
  name: Daily backup
  hypervisor: hv-1
  repository: repo-1
  vms:
    - name: vm-1
      guestProcessing: true
    - tag: production
  blockSize: 1MiB
  compression: snappy`,
    )
    .action(async (opts: { file: string; json?: boolean }, cmd: Command) => {
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
    });

  job
    .command("list")
    .description("list the jobs in the configuration store")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }, cmd: Command) => {
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
    });

  job
    .command("show")
    .description("show one job")
    .argument("<jobId>", "job id")
    .option("--json", "print JSON")
    .action(async (jobId: string, opts: { json?: boolean }, cmd: Command) => {
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
    });

  job
    .command("start")
    .description("run a job now: publishes a trigger and prints the session id")
    .argument("<jobId>", "job id")
    .option("--wait", "wait for the session to end, with a progress bar on stderr, then print its report")
    .option("--request-id <key>", "idempotency key: starting again with the same key starts no second session (default: a fresh random id)")
    .option("--reason <text>", "free text recorded with the trigger")
    .option("--json", "print JSON")
    .addHelpText("after", "\nExit code with --wait: 0 when the session ends with success or warning, 1 when it failed.")
    .action(async (jobId: string, opts: { wait?: boolean; requestId?: string; reason?: string; json?: boolean }, cmd: Command) => {
      await withContext(cmd, async (ctx) => {
        const triggered = await triggerJob(ctx, jobId, { ...(opts.requestId ? { requestId: opts.requestId } : {}), ...(opts.reason ? { reason: opts.reason } : {}) });
        if (triggered.duplicate) process.stderr.write(`ferry: request ${triggered.requestId} was already made; following its session\n`);
        await reportTriggered(ctx, triggered, opts);
      });
    });
}
