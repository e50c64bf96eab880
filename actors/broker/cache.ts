import type { Inventory } from "../../protocol/mod.js";

/** Asks the hypervisor for its whole inventory; throws FerryError when it cannot. */
export type FetchInventory = (hypervisorId: string) => Promise<Inventory>;

export interface CachedInventory {
  inventory: Inventory;
  /** When the hypervisor's answer arrived (epoch ms). */
  cachedAt: number;
}

export interface InventoryCacheOptions {
  ttlMs: number;
  now?: () => number;
}

interface InFlight {
  promise: Promise<CachedInventory>;
  /** Bumped by invalidate: an answer fetched before an invalidation is not cached. */
  generation: number;
}

export const DEFAULT_BROKER_TTL_MS = 30_000;

/** `FERRY_BROKER_TTL_MS` when it is a non-negative integer, else the default; `onIgnored` hears of a value set but unusable. */
export function ttlFromEnv(value = process.env.FERRY_BROKER_TTL_MS, onIgnored?: (value: string) => void): number {
  if (value === undefined || value === "") return DEFAULT_BROKER_TTL_MS;
  const n = Number(value);
  if (Number.isInteger(n) && n >= 0) return n;
  onIgnored?.(value);
  return DEFAULT_BROKER_TTL_MS;
}

/**
 * Inventory per hypervisor, kept `ttlMs`. Concurrent misses share one fetch (single flight), so a
 * burst of sessions costs the hypervisor one inventory call. Failed fetches are not cached.
 *
 * `refresh` always starts a new fetch (its caller wants data no older than the request), and
 * later misses join that newest fetch. `invalidate` drops the entry and detaches fetches already
 * in flight: their answers may predate the change that caused the invalidation.
 */
export class InventoryCache {
  private readonly entries = new Map<string, CachedInventory>();
  private readonly inFlight = new Map<string, InFlight>();
  private readonly generations = new Map<string, number>();
  private readonly now: () => number;

  constructor(
    private readonly fetch: FetchInventory,
    private readonly opts: InventoryCacheOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  async get(hypervisorId: string, opts: { refresh?: boolean } = {}): Promise<CachedInventory> {
    if (!opts.refresh) {
      const cached = this.entries.get(hypervisorId);
      if (cached && this.now() - cached.cachedAt < this.opts.ttlMs) return cached;
      const pending = this.inFlight.get(hypervisorId);
      if (pending && pending.generation === this.generation(hypervisorId)) return pending.promise;
    }
    return this.startFetch(hypervisorId);
  }

  /** Drops one hypervisor's entry, or all; returns how many cached entries were dropped. */
  invalidate(hypervisorId?: string): number {
    const ids = hypervisorId === undefined ? [...new Set([...this.entries.keys(), ...this.inFlight.keys()])] : [hypervisorId];
    let dropped = 0;
    for (const id of ids) {
      if (this.entries.delete(id)) dropped++;
      this.generations.set(id, this.generation(id) + 1);
      this.inFlight.delete(id);
    }
    return dropped;
  }

  get size(): number {
    return this.entries.size;
  }

  private generation(hypervisorId: string): number {
    return this.generations.get(hypervisorId) ?? 0;
  }

  private startFetch(hypervisorId: string): Promise<CachedInventory> {
    const generation = this.generation(hypervisorId);
    const promise = this.fetch(hypervisorId).then((inventory) => {
      const result: CachedInventory = { inventory, cachedAt: this.now() };
      const current = this.entries.get(hypervisorId);
      // Keep the newest answer; ignore answers that an invalidation made stale.
      if (generation === this.generation(hypervisorId) && (!current || current.cachedAt <= result.cachedAt)) {
        this.entries.set(hypervisorId, result);
      }
      return result;
    });
    const flight: InFlight = { promise, generation };
    this.inFlight.set(hypervisorId, flight);
    const forget = () => {
      if (this.inFlight.get(hypervisorId) === flight) this.inFlight.delete(hypervisorId);
    };
    promise.then(forget, forget);
    return promise;
  }
}
