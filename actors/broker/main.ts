import type { ActorCliOptions } from "../../cli/commands/actor.js";
import { Actor } from "../../lib/actor.js";
import { request } from "../../lib/rpc.js";
import {
  ErrorCode,
  FerryError,
  GetVmRequest,
  GetVmResponse,
  InvalidateRequest,
  InvalidateResponse,
  InventoryRequest,
  InventoryResponse,
  ListHostsRequest,
  ListHostsResponse,
  ListVmsRequest,
  ListVmsResponse,
  brokerSubjects,
  hypervisorSubjects,
  type Inventory,
} from "../../protocol/mod.js";
import { DEFAULT_BROKER_TTL_MS, InventoryCache, ttlFromEnv } from "./cache.js";
import { selectVms } from "./select.js";

/** Knobs tests turn down; the command line takes `FERRY_BROKER_TTL_MS` and the defaults. */
export interface BrokerTuning {
  ttlMs?: number;
  /** How long one inventory call to the hypervisor may take. */
  fetchTimeoutMs?: number;
}

const DEFAULT_FETCH_TIMEOUT_MS = 10_000;

/** Says which hypervisor failed and how, keeping the code (and so `retryable`) meaningful. */
function hypervisorError(hypervisorId: string, err: unknown, timeoutMs: number): FerryError {
  const e = FerryError.from(err);
  const subject = hypervisorSubjects.inventory(hypervisorId);
  // lib/rpc gives transport failures a cause; an error the hypervisor replied has none.
  const replied = e.cause === undefined;
  if (!replied && e.code === ErrorCode.Unavailable) {
    return new FerryError(ErrorCode.Unavailable, `hypervisor ${hypervisorId} is unreachable: nothing answers on ${subject}`, { cause: err });
  }
  if (!replied && e.code === ErrorCode.Timeout) {
    return new FerryError(ErrorCode.Unavailable, `hypervisor ${hypervisorId} did not answer its inventory request within ${timeoutMs} ms`, {
      cause: err,
    });
  }
  return new FerryError(e.code, `hypervisor ${hypervisorId}: ${e.message}`, { retryable: e.retryable, cause: err });
}

/**
 * The inventory broker: answers questions about hosts and VMs from a per-hypervisor cache of the
 * hypervisor's inventory, so sessions do not each walk the hypervisor. Query endpoints sit in the
 * services API's queue group: any broker answers, and brokers scale out.
 */
export async function start(opts: ActorCliOptions, tuning: BrokerTuning = {}): Promise<Actor> {
  const actor = await Actor.start({ role: "broker", id: opts.id, natsUrl: opts.natsUrl });
  const log = actor.log;
  const ttlMs =
    tuning.ttlMs ??
    ttlFromEnv(process.env.FERRY_BROKER_TTL_MS, (value) =>
      log.warn({ FERRY_BROKER_TTL_MS: value, ttlMs: DEFAULT_BROKER_TTL_MS }, "ignored FERRY_BROKER_TTL_MS: not a non-negative integer"),
    );
  const fetchTimeoutMs = tuning.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;

  const fetchInventory = async (hypervisorId: string): Promise<Inventory> => {
    const started = Date.now();
    try {
      const res = await request(actor.nc, hypervisorSubjects.inventory(hypervisorId), InventoryRequest, {}, InventoryResponse, {
        timeoutMs: fetchTimeoutMs,
      });
      log.info({ hypervisorId, vms: res.inventory.vms.length, hosts: res.inventory.hosts.length, ms: Date.now() - started }, "inventory fetched");
      return res.inventory;
    } catch (err) {
      throw hypervisorError(hypervisorId, err, fetchTimeoutMs);
    }
  };
  const cache = new InventoryCache(fetchInventory, { ttlMs });

  actor.endpoint({
    name: "hosts",
    subject: brokerSubjects.hosts(),
    request: ListHostsRequest,
    response: ListHostsResponse,
    handler: async (req) => {
      const { inventory, cachedAt } = await cache.get(req.hypervisorId, { refresh: req.refresh });
      return { hosts: inventory.hosts, datastores: inventory.datastores, cachedAt };
    },
  });

  actor.endpoint({
    name: "vms",
    subject: brokerSubjects.vms(),
    request: ListVmsRequest,
    response: ListVmsResponse,
    handler: async (req) => {
      const { inventory, cachedAt } = await cache.get(req.hypervisorId, { refresh: req.refresh });
      const { vms, unmatched } = selectVms(inventory.vms, req.selectors);
      return { vms, unmatched, cachedAt };
    },
  });

  actor.endpoint({
    name: "vm",
    subject: brokerSubjects.vm(),
    request: GetVmRequest,
    response: GetVmResponse,
    handler: async (req) => {
      const { inventory, cachedAt } = await cache.get(req.hypervisorId, { refresh: req.refresh });
      const vm = inventory.vms.find((v) => v.id === req.vmId);
      if (!vm) throw new FerryError(ErrorCode.NotFound, `VM ${req.vmId} not found on hypervisor ${req.hypervisorId}`);
      return { vm, cachedAt };
    },
  });

  actor.endpoint({
    name: "invalidate",
    subject: brokerSubjects.invalidate(),
    request: InvalidateRequest,
    response: InvalidateResponse,
    // No queue group: every broker drops its cache; the caller reads the first answer.
    queue: "",
    handler: async (req) => {
      const invalidated = cache.invalidate(req.hypervisorId);
      log.info({ hypervisorId: req.hypervisorId ?? "*", invalidated }, "cache invalidated");
      return { invalidated };
    },
  });

  log.info({ ttlMs, fetchTimeoutMs }, "inventory cache ready");
  actor.serving();
  actor.exitOnSignals();
  return actor;
}
