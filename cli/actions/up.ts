import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { stringify as toYaml } from "yaml";
import { demoSimulatorConfig } from "../../simulators/demo.js";
import { explicitNatsUrl } from "../context.js";
import { demoJobSpec } from "../demo-job.js";
import { formatBytes } from "../format.js";
import { onTerminationSignal } from "../signals.js";
import { startStack } from "../stack.js";

/** `ferry up` (options in cli/commands/up.ts). */
export async function up(opts: { workdir: string; vms: number; diskSize: number; proxies: number }, cmd: Command): Promise<void> {
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
}
