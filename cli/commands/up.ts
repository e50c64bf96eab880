import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Command, Option } from "commander";
import { stringify as toYaml } from "yaml";
import { demoSimulatorConfig } from "../../simulators/demo.js";
import { demoJobSpec } from "../demo-job.js";
import { formatBytes } from "../format.js";
import { positiveInt, sizeOption } from "../options.js";
import { onTerminationSignal } from "../signals.js";
import { startStack } from "../stack.js";

/** The NATS server a stack command was pointed at explicitly (global --nats or $NATS_URL), if any. */
export function explicitNatsUrl(cmd: Command): string | undefined {
  return cmd.optsWithGlobals<{ nats?: string }>().nats ?? (process.env.NATS_URL || undefined);
}

export function registerUpCommand(program: Command): void {
  program
    .command("up")
    .description("run the embedded local stack (nats-server, simulator, every actor) with the demo inventory until Ctrl-C")
    .option("--workdir <dir>", "where the stack keeps its state, logs, disks and repository", ".ferry")
    .option("--vms <n>", "demo VMs", positiveInt, 3)
    .addOption(new Option("--disk-size <size>", "size of each demo disk, e.g. 256MiB or 1GiB").argParser(sizeOption).default(256 * 1024 * 1024, "256MiB"))
    .option("--proxies <n>", "source movers (proxy-1..N)", positiveInt, 1)
    .addHelpText(
      "after",
      "\nWith --nats or $NATS_URL the stack uses that server instead of starting one.\nState persists in the workdir: run `ferry up` again to continue where you stopped.",
    )
    .action(async (opts: { workdir: string; vms: number; diskSize: number; proxies: number }, cmd: Command) => {
      const workdir = resolve(opts.workdir);
      const simulatorConfig = demoSimulatorConfig({ dir: join(workdir, "hypervisor"), vms: opts.vms, diskSizeBytes: opts.diskSize, seed: 1 });
      process.stderr.write(`ferry up: ${opts.vms} VMs with ${formatBytes(opts.diskSize)} disks, ${opts.proxies} prox${opts.proxies === 1 ? "y" : "ies"}, workdir ${workdir}\n`);
      const natsUrl = explicitNatsUrl(cmd);
      const stack = await startStack({
        workdir,
        ...(natsUrl ? { natsUrl } : {}),
        simulatorConfig,
        proxies: opts.proxies,
        log: (line) => process.stderr.write(`  ${line}\n`),
      });
      const jobFile = join(workdir, "demo-job.yaml");
      writeFileSync(jobFile, toYaml(demoJobSpec(simulatorConfig, stack.repositoryId)));

      const stopped = new Promise<void>((done) => {
        onTerminationSignal(async (signal) => {
          process.stderr.write(`\nferry up: ${signal}: stopping the stack\n`);
          await stack.stop();
          process.stderr.write("ferry up: stopped\n");
          done();
        });
      });
      process.stdout.write(
        [
          "",
          "Ferry is up.",
          `  NATS        ${stack.natsUrl}`,
          `  hypervisor  ${stack.hypervisorId} (simulator, ${opts.vms} VMs)`,
          `  repository  ${stack.repositoryId} at ${stack.repositoryPath}`,
          `  logs        ${join(workdir, "logs")}`,
          "",
          "In another terminal:",
          `  export NATS_URL=${stack.natsUrl}`,
          `  ferry job create -f ${jobFile}`,
          "  ferry job start demo --wait",
          "  ferry session list",
          `  ferry restore-point list --repository ${stack.repositoryId}`,
          `  ferry restore <restorePointId> --repository ${stack.repositoryId} --to-dir /tmp/ferry-restored --wait`,
          `  ferry verify <restorePointId> --repository ${stack.repositoryId} --wait`,
          "",
          "Ctrl-C stops everything.",
          "",
        ].join("\n"),
      );
      await stopped;
    });
}
