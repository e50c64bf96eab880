import { hostname } from "node:os";
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm, type Service } from "@nats-io/services";
import { createLogger, type Logger } from "../lib/log.js";
import { connectNats } from "../lib/nats.js";
import { FERRY_VERSION } from "../lib/version.js";
import { ErrorCode, FerryError, ServiceName } from "../protocol/mod.js";
import type { SimulatorConfig } from "./config.js";
import { GuestAgent } from "./guest/agent.js";
import { serveGuestAgent } from "./guest/service.js";
import { SimHypervisor } from "./hypervisor/hypervisor.js";
import { serveHypervisor, type ServeHooks } from "./hypervisor/service.js";

export interface SimulatorHandle {
  /** Stops the workloads and applications, answers what is in flight, closes; snapshots stay. */
  stop(): Promise<void>;
  /** The hypervisor behind the bus API (for in-process callers such as tests). */
  readonly hypervisor: SimHypervisor;
  readonly log: Logger;
}

/** How long `stop` waits for requests in flight (a snapshot commit, say) before closing anyway. */
const STOP_WAIT_MS = 30_000;

/**
 * Runs the simulators: prepares the disks (generating missing images), then serves the hypervisor
 * API and one guest agent per VM with a `guest` section over NATS, registered with the services
 * API as `ferry-hypervisor-simulator` and `ferry-guest-simulator` (metadata: hypervisorId).
 */
export async function start(opts: { config: SimulatorConfig; natsUrl?: string; log?: Logger }): Promise<SimulatorHandle> {
  const { config } = opts;
  const log = opts.log ?? createLogger("ferry-simulator", { hypervisorId: config.hypervisorId });
  const hv = await SimHypervisor.open(config, log);

  const agents: GuestAgent[] = [];
  for (const vm of config.vms) {
    if (!vm.guest) continue;
    const firstDisk = vm.disks[0]!;
    const writable = firstDisk.content.kind !== "image";
    if (!writable && vm.guest.applications.some((a) => a.writeBytesPerSec > 0)) {
      log.warn({ vmId: vm.id, diskId: firstDisk.id }, "the VM's first disk is a read-only image; its applications will not write");
    }
    const write = writable ? (data: Buffer) => hv.writeAtRandom(vm.id, data, firstDisk.id) : undefined;
    agents.push(new GuestAgent(vm.id, vm.guest.os, vm.guest.applications, log, write));
  }

  let nc: NatsConnection | undefined;
  const services: Service[] = [];
  let stopping = false;
  const inFlight = new Set<Promise<unknown>>();
  const hooks: ServeHooks = {
    gate: () => (stopping ? new FerryError(ErrorCode.Unavailable, `simulator ${config.hypervisorId} is stopping`) : undefined),
    track: (work) => {
      inFlight.add(work);
      const forget = () => inFlight.delete(work);
      work.then(forget, forget);
      return work;
    },
  };

  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ inFlight: inFlight.size }, "simulator stopping");
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => setTimeout(r, STOP_WAIT_MS).unref())]);
    for (const service of services) await service.stop().catch(() => undefined);
    await hv.close();
    await nc?.drain().catch(() => undefined);
    log.info("simulator stopped");
  };

  try {
    nc = await connectNats({ servers: opts.natsUrl, name: `ferry-simulator-${config.hypervisorId}` });
    const svcm = new Svcm(nc);
    const metadata = { hypervisorId: config.hypervisorId, host: hostname() };
    const hvService = await svcm.add({
      name: ServiceName.hypervisorSimulator,
      version: FERRY_VERSION,
      description: `Ferry hypervisor simulator ${config.hypervisorId}`,
      metadata,
    });
    services.push(hvService);
    serveHypervisor(hvService, hv, log, hooks);
    const guestService = await svcm.add({
      name: ServiceName.guestSimulator,
      version: FERRY_VERSION,
      description: `Ferry guest OS simulator (VMs of ${config.hypervisorId})`,
      metadata,
    });
    services.push(guestService);
    for (const agent of agents) serveGuestAgent(guestService, agent, log, hooks);
    // A flush makes sure the server has every subscription before callers are told we serve.
    await nc.flush();
  } catch (err) {
    log.error({ err: (err as Error).message }, "simulator failed to start");
    await stop();
    throw err;
  }
  log.info(
    { vms: config.vms.length, guestAgents: agents.length, datastores: config.datastores.map((d) => d.path) },
    "simulator serving",
  );
  return { stop, hypervisor: hv, log };
}
