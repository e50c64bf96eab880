import type { Command } from "commander";
import { lazyAction } from "../options.js";

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
    .action(lazyAction(async () => (await import("../actions/simulator.js")).simulator));
}
