import type { Command } from "commander";

/**
 * `ferry simulator --config <file>`: runs the hypervisor simulator and the guest OS simulators as
 * this process. Everything else reaches them only over NATS, as it would a real hypervisor.
 */
export function registerSimulatorCommand(program: Command): void {
  program
    .command("simulator")
    .description("run the hypervisor and guest OS simulators (VMs, disks, snapshots, guest agents) as this process")
    .requiredOption("--config <file>", "simulator config, JSON (.json) or YAML (.yaml/.yml); see docs/simulators.md")
    .addHelpText(
      "after",
      `
Serves the hypervisor API ferry.hv.<hypervisorId>.… and one guest agent ferry.agent.<vmId>.…
per VM with a "guest" section. Disk images missing at start are generated first (sparse raw
files under each datastore's path); existing ones whose content spec matches are kept.

SIGTERM or SIGINT stops the workloads and applications, answers requests in flight and exits 0.
Snapshots are left in place and found again by the next run (state file in the first datastore).

Example:
  ferry --nats nats://127.0.0.1:4222 simulator --config simulator.yaml`,
    )
    .action(async (opts: { config: string }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<{ nats?: string }>();
      const { loadSimulatorConfig } = await import("../../simulators/config.js");
      const { start } = await import("../../simulators/main.js");
      const config = await loadSimulatorConfig(opts.config);
      const simulator = await start({ config, natsUrl: globals.nats });
      await new Promise<void>((resolve) => {
        let stopping = false;
        const onSignal = (signal: NodeJS.Signals) => {
          if (stopping) {
            process.stderr.write(`ferry simulator: ${signal} again; exiting now\n`);
            process.exit(130);
          }
          stopping = true;
          // The logger writes asynchronously: flush it so the last lines are not lost on exit.
          const exit = (code: number) => simulator.log.flush(() => process.exit(code));
          simulator.stop().then(
            () => exit(0),
            (err: unknown) => {
              process.stderr.write(`ferry simulator: stop failed: ${(err as Error).message}\n`);
              exit(1);
            },
          );
          resolve();
        };
        process.on("SIGTERM", onSignal);
        process.on("SIGINT", onSignal);
      });
    });
}
