import { describe, expect, it } from "vitest";
import { ErrorCode, FerryError, type Inventory, type VmInfo } from "../../protocol/mod.js";
import { InventoryCache, ttlFromEnv, DEFAULT_BROKER_TTL_MS } from "../../actors/broker/cache.js";
import { globToRegExp, selectVms } from "../../actors/broker/select.js";

function vm(id: string, name: string, tags: string[] = []): VmInfo {
  return { id, name, hostId: "host1", powerState: "poweredOn", guestOs: "linux", tags, guestAgent: false, disks: [] };
}

const VMS = [vm("vm-1", "web-01", ["prod", "web"]), vm("vm-2", "web-02", ["web"]), vm("vm-3", "db-01", ["prod", "db"]), vm("vm-4", "build", [])];

function inventory(hypervisorId: string, vms: VmInfo[] = VMS): Inventory {
  return { hypervisorId, hosts: [{ id: "host1", name: "esx1", datastores: ["ds1"] }], datastores: [], vms };
}

/** A fake hypervisor whose answers the test releases one by one. */
function fakeFetch() {
  const calls: Array<{ hypervisorId: string; resolve: (inv: Inventory) => void; reject: (err: Error) => void }> = [];
  const fetch = (hypervisorId: string) =>
    new Promise<Inventory>((resolve, reject) => {
      calls.push({ hypervisorId, resolve, reject });
    });
  return { calls, fetch };
}

describe("broker VM selection", () => {
  it("selects by id, exact name and tag, each VM once and in inventory order", () => {
    const { vms, unmatched } = selectVms(VMS, [{ tag: "prod" }, { name: "web-02" }, { id: "vm-1" }]);
    expect(vms.map((v) => v.id)).toEqual(["vm-1", "vm-2", "vm-3"]);
    expect(unmatched).toEqual([]);
  });

  it("matches names with a * glob and nothing else as a pattern", () => {
    expect(selectVms(VMS, [{ name: "web-*" }]).vms.map((v) => v.id)).toEqual(["vm-1", "vm-2"]);
    expect(selectVms(VMS, [{ name: "*-01" }]).vms.map((v) => v.id)).toEqual(["vm-1", "vm-3"]);
    expect(selectVms(VMS, [{ name: "*" }]).vms).toHaveLength(4);
    expect(selectVms([vm("x", "a.b"), vm("y", "axb")], [{ name: "a.b" }]).vms.map((v) => v.id)).toEqual(["x"]);
    expect(globToRegExp("db-(1)*").test("db-(1)-x")).toBe(true);
    expect(selectVms(VMS, [{ name: "WEB-01" }]).vms).toEqual([]);
  });

  it("requires every field of one selector to match", () => {
    expect(selectVms(VMS, [{ name: "web-*", tag: "prod" }]).vms.map((v) => v.id)).toEqual(["vm-1"]);
  });

  it("reports the selectors that matched no VM, in request order", () => {
    const { vms, unmatched } = selectVms(VMS, [{ id: "vm-9" }, { tag: "web" }, { name: "mail-*" }]);
    expect(vms.map((v) => v.id)).toEqual(["vm-1", "vm-2"]);
    expect(unmatched).toEqual([{ id: "vm-9" }, { name: "mail-*" }]);
  });

  it("returns every VM when there are no selectors", () => {
    expect(selectVms(VMS, []).vms.map((v) => v.id)).toEqual(["vm-1", "vm-2", "vm-3", "vm-4"]);
  });

  it("refuses an empty selector instead of matching everything", () => {
    expect(() => selectVms(VMS, [{}])).toThrow(expect.objectContaining({ code: ErrorCode.BadRequest }));
  });
});

describe("broker inventory cache", () => {
  it("answers from the cache within the TTL and fetches again after it", async () => {
    let now = 1_000;
    let fetches = 0;
    const cache = new InventoryCache(async (id) => (fetches++, inventory(id)), { ttlMs: 30_000, now: () => now });
    const first = await cache.get("hv1");
    now += 29_999;
    const second = await cache.get("hv1");
    expect(fetches).toBe(1);
    expect(second.cachedAt).toBe(first.cachedAt);
    now += 1;
    const third = await cache.get("hv1");
    expect(fetches).toBe(2);
    expect(third.cachedAt).toBe(now);
  });

  it("keeps one entry per hypervisor", async () => {
    const seen: string[] = [];
    const cache = new InventoryCache(async (id) => (seen.push(id), inventory(id)), { ttlMs: 30_000 });
    expect((await cache.get("hv1")).inventory.hypervisorId).toBe("hv1");
    expect((await cache.get("hv2")).inventory.hypervisorId).toBe("hv2");
    await cache.get("hv1");
    expect(seen).toEqual(["hv1", "hv2"]);
  });

  it("shares one fetch between concurrent misses", async () => {
    const fake = fakeFetch();
    const cache = new InventoryCache(fake.fetch, { ttlMs: 30_000 });
    const a = cache.get("hv1");
    const b = cache.get("hv1");
    expect(fake.calls).toHaveLength(1);
    fake.calls[0]!.resolve(inventory("hv1"));
    expect(await a).toBe(await b);
  });

  it("bypasses the cache on refresh", async () => {
    let fetches = 0;
    const cache = new InventoryCache(async (id) => (fetches++, inventory(id)), { ttlMs: 30_000 });
    await cache.get("hv1");
    await cache.get("hv1", { refresh: true });
    expect(fetches).toBe(2);
  });

  it("does not cache a failed fetch, and every waiter sees the failure", async () => {
    const fake = fakeFetch();
    const cache = new InventoryCache(fake.fetch, { ttlMs: 30_000 });
    const a = cache.get("hv1");
    const b = cache.get("hv1");
    fake.calls[0]!.reject(new FerryError(ErrorCode.Unavailable, "hypervisor hv1 is unreachable"));
    await expect(a).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    await expect(b).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    const c = cache.get("hv1");
    expect(fake.calls).toHaveLength(2);
    fake.calls[1]!.resolve(inventory("hv1"));
    await expect(c).resolves.toMatchObject({ inventory: { hypervisorId: "hv1" } });
  });

  it("drops entries on invalidate and counts them", async () => {
    let fetches = 0;
    const cache = new InventoryCache(async (id) => (fetches++, inventory(id)), { ttlMs: 30_000 });
    await cache.get("hv1");
    await cache.get("hv2");
    expect(cache.invalidate("hv1")).toBe(1);
    expect(cache.invalidate("hv1")).toBe(0);
    await cache.get("hv1");
    expect(fetches).toBe(3);
    expect(cache.invalidate()).toBe(2);
    expect(cache.size).toBe(0);
  });

  it("does not cache or share an answer that was in flight when the cache was invalidated", async () => {
    const fake = fakeFetch();
    const cache = new InventoryCache(fake.fetch, { ttlMs: 30_000 });
    const before = cache.get("hv1");
    cache.invalidate("hv1");
    const after = cache.get("hv1");
    expect(fake.calls).toHaveLength(2);
    fake.calls[0]!.resolve(inventory("hv1", VMS.slice(0, 1)));
    fake.calls[1]!.resolve(inventory("hv1"));
    expect((await before).inventory.vms).toHaveLength(1);
    expect((await after).inventory.vms).toHaveLength(4);
    expect((await cache.get("hv1")).inventory.vms).toHaveLength(4);
  });

  it("reads its TTL from FERRY_BROKER_TTL_MS and falls back to 30 s on nonsense", () => {
    expect(ttlFromEnv(undefined)).toBe(DEFAULT_BROKER_TTL_MS);
    expect(DEFAULT_BROKER_TTL_MS).toBe(30_000);
    expect(ttlFromEnv("500")).toBe(500);
    expect(ttlFromEnv("soon")).toBe(DEFAULT_BROKER_TTL_MS);
    expect(ttlFromEnv("-1")).toBe(DEFAULT_BROKER_TTL_MS);
  });

  it("says when it ignores FERRY_BROKER_TTL_MS, and only then", () => {
    const ignored: string[] = [];
    const note = (value: string) => void ignored.push(value);
    // Integers written another way are still used, and not reported as ignored.
    expect(ttlFromEnv("1e3", note)).toBe(1_000);
    expect(ttlFromEnv("0500", note)).toBe(500);
    expect(ttlFromEnv(undefined, note)).toBe(DEFAULT_BROKER_TTL_MS);
    expect(ignored).toEqual([]);
    expect(ttlFromEnv("1.5", note)).toBe(DEFAULT_BROKER_TTL_MS);
    expect(ignored).toEqual(["1.5"]);
  });
});
