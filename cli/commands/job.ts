import type { Command } from "commander";
import { lazyAction } from "../options.js";

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
    .action(lazyAction(async () => (await import("../actions/job.js")).jobCreate));

  job
    .command("list")
    .description("list the jobs in the configuration store")
    .option("--json", "print JSON")
    .action(lazyAction(async () => (await import("../actions/job.js")).jobList));

  job
    .command("show")
    .description("show one job")
    .argument("<jobId>", "job id")
    .option("--json", "print JSON")
    .action(lazyAction(async () => (await import("../actions/job.js")).jobShow));

  job
    .command("start")
    .description("run a job now: publishes a trigger and prints the session id")
    .argument("<jobId>", "job id")
    .option("--wait", "wait for the session to end, with a progress bar on stderr, then print its report")
    .option("--request-id <key>", "idempotency key: starting again with the same key starts no second session (default: a fresh random id)")
    .option("--reason <text>", "free text recorded with the trigger")
    .option("--json", "print JSON")
    .addHelpText("after", "\nExit code with --wait: 0 when the session ends with success or warning, 1 when it failed.")
    .action(lazyAction(async () => (await import("../actions/job.js")).jobStart));
}
