import { JobSpec, type JobSpecInput } from "../protocol/mod.js";
import type { SimulatorConfigInput } from "../simulators/config.js";

/**
 * The demo's backup job: every VM of the simulator's inventory, selected by id, with
 * application-aware processing for vm-1 (or, without a vm-1, the first VM that has a guest agent).
 */
export function demoJobSpec(config: Pick<SimulatorConfigInput, "hypervisorId" | "vms">, repositoryId: string, jobId = "demo"): JobSpec {
  const vms = config.vms ?? [];
  const guestVm = vms.find((vm) => vm.id === "vm-1")?.id ?? vms.find((vm) => vm.guest !== undefined)?.id;
  const input: JobSpecInput = {
    id: jobId,
    name: "Demo backup",
    description: "every VM of the demo inventory",
    hypervisor: config.hypervisorId,
    repository: repositoryId,
    vms: vms.map((vm) => (vm.id === guestVm ? { id: vm.id, guestProcessing: true } : { id: vm.id })),
  };
  return JobSpec.parse(input);
}
