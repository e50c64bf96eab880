import { connect } from "@nats-io/transport-node";
import { createInbox } from "@nats-io/nats-core";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../../lib/actor.js";
import { request } from "../../lib/rpc.js";
import {
  ErrorCode,
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
  decode,
  decodeReply,
  encode,
  encodeError,
  hypervisorSubjects,
  type BodyIn,
  type Inventory,
  type MessageDef,
  type VmInfo,
} from "../../protocol/mod.js";
import { start } from "../../actors/broker/main.js";
import { expectMalformedRefused, type MalformedProbe } from "../harness/malformed.js";
import { startTestNats } from "../harness/nats.js";

let nats: Awaited<ReturnType<typeof startTestNats>>;
let nc: NatsConnection;
let broker: Actor;

function vm(id: string, name: string, tags: string[]): VmInfo {
  return {
    id,
    name,
    hostId: "host-1",
    powerState: "poweredOn",
    guestOs: "linux",
    tags,
    guestAgent: false,
    disks: [{ id: `${id}-d0`, label: "disk0", sizeBytes: 4 * 1024 * 1024, datastoreId: "ds-1" }],
  };
}

/** A fake hypervisor on `ferry.hv.<id>.inventory`, listening when this resolves, that counts calls and can answer slowly. */
async function fakeHypervisor(hypervisorId: string, vms: VmInfo[], delayMs = 0) {
  const state = { calls: 0, vms };
  const inventory = (): Inventory => ({
    hypervisorId,
    hosts: [{ id: "host-1", name: "esx-1", datastores: ["ds-1"] }],
    datastores: [{ id: "ds-1", name: "local", capacityBytes: 1 << 30, freeBytes: 1 << 29 }],
    vms: state.vms,
  });
  const sub = nc.subscribe(hypervisorSubjects.inventory(hypervisorId), {
    callback: (_err, msg) => {
      decode(InventoryRequest, msg.data);
      state.calls++;
      setTimeout(() => msg.respond(encode(InventoryResponse, { inventory: inventory() })), delayMs);
    },
  });
  await nc.flush();
  return { state, stop: () => sub.unsubscribe() };
}

const listVms = (body: BodyIn<typeof ListVmsRequest>) =>
  request(nc, brokerSubjects.vms(), ListVmsRequest, body, ListVmsResponse);

beforeAll(async () => {
  nats = await startTestNats();
  nc = await connect({ servers: nats.url });
  broker = await start({ id: "broker-1", natsUrl: nats.url }, { ttlMs: 30_000, fetchTimeoutMs: 2_000 });
});

afterAll(async () => {
  await broker?.stop();
  await nc?.close();
  await nats?.stop();
});

describe("broker over NATS", () => {
  it("answers a second question from its cache and reports unmatched selectors", async () => {
    const hv = await fakeHypervisor("hv-a", [vm("vm-1", "web-01", ["prod"]), vm("vm-2", "web-02", []), vm("vm-3", "db-01", ["prod"])]);
    try {
      const first = await listVms({ hypervisorId: "hv-a", selectors: [{ name: "web-*" }, { id: "vm-404" }, { tag: "prod" }] });
      expect(first.vms.map((v) => v.id)).toEqual(["vm-1", "vm-2", "vm-3"]);
      expect(first.unmatched).toEqual([{ id: "vm-404" }]);
      expect(hv.state.calls).toBe(1);

      const second = await listVms({ hypervisorId: "hv-a", selectors: [{ tag: "prod" }] });
      expect(second.vms.map((v) => v.id)).toEqual(["vm-1", "vm-3"]);
      expect(second.cachedAt).toBe(first.cachedAt);
      const hosts = await request(nc, brokerSubjects.hosts(), ListHostsRequest, { hypervisorId: "hv-a" }, ListHostsResponse);
      expect(hosts.hosts.map((h) => h.id)).toEqual(["host-1"]);
      expect(hosts.datastores.map((d) => d.id)).toEqual(["ds-1"]);
      const one = await request(nc, brokerSubjects.vm(), GetVmRequest, { hypervisorId: "hv-a", vmId: "vm-2" }, GetVmResponse);
      expect(one.vm.name).toBe("web-02");
      expect(hv.state.calls).toBe(1);

      // A new VM appears: the cache hides it until refresh or invalidate.
      hv.state.vms = [...hv.state.vms, vm("vm-4", "web-03", [])];
      expect((await listVms({ hypervisorId: "hv-a", selectors: [{ name: "web-03" }] })).unmatched).toEqual([{ name: "web-03" }]);
      expect((await listVms({ hypervisorId: "hv-a", selectors: [{ name: "web-03" }], refresh: true })).vms.map((v) => v.id)).toEqual(["vm-4"]);
      expect(hv.state.calls).toBe(2);

      const inv = await request(nc, brokerSubjects.invalidate(), InvalidateRequest, { hypervisorId: "hv-a" }, InvalidateResponse);
      expect(inv.invalidated).toBe(1);
      await listVms({ hypervisorId: "hv-a" });
      expect(hv.state.calls).toBe(3);
    } finally {
      hv.stop();
    }
  });

  it("delivers invalidate to every broker instance, not to one of a queue group", async () => {
    const second = await start({ id: "broker-2", natsUrl: nats.url }, { ttlMs: 30_000, fetchTimeoutMs: 2_000 });
    await nc.flush();
    try {
      const inbox = createInbox();
      const replies = nc.subscribe(inbox);
      nc.publish(brokerSubjects.invalidate(), encode(InvalidateRequest, {}), { reply: inbox });
      const answered: number[] = [];
      const deadline = setTimeout(() => replies.unsubscribe(), 1_000);
      for await (const reply of replies) {
        answered.push(decodeReply(InvalidateResponse, reply.data).invalidated);
        if (answered.length === 2) break;
      }
      clearTimeout(deadline);
      expect(answered).toHaveLength(2);
    } finally {
      await second.stop();
    }
  });

  it("shares one hypervisor call among concurrent questions", async () => {
    const hv = await fakeHypervisor("hv-b", [vm("vm-1", "a", [])], 300);
    try {
      const answers = await Promise.all(Array.from({ length: 5 }, () => listVms({ hypervisorId: "hv-b" })));
      expect(answers.every((a) => a.vms.length === 1)).toBe(true);
      expect(hv.state.calls).toBe(1);
    } finally {
      hv.stop();
    }
  });

  it("answers not_found for a VM the hypervisor does not have", async () => {
    const hv = await fakeHypervisor("hv-c", [vm("vm-1", "a", [])]);
    try {
      await expect(request(nc, brokerSubjects.vm(), GetVmRequest, { hypervisorId: "hv-c", vmId: "vm-9" }, GetVmResponse)).rejects.toMatchObject({
        code: ErrorCode.NotFound,
        message: expect.stringContaining("vm-9"),
      });
    } finally {
      hv.stop();
    }
  });

  it("answers unavailable, naming the hypervisor, when the hypervisor does not answer", async () => {
    await expect(listVms({ hypervisorId: "hv-gone" })).rejects.toMatchObject({
      code: ErrorCode.Unavailable,
      retryable: true,
      message: expect.stringContaining("hypervisor hv-gone is unreachable"),
    });
  });

  it("passes on an error the hypervisor replies, naming the hypervisor", async () => {
    const sub = nc.subscribe(hypervisorSubjects.inventory("hv-err"), {
      callback: (_err, msg) => {
        msg.respond(encodeError({ code: ErrorCode.Internal, message: "inventory walk failed", retryable: false }));
      },
    });
    await nc.flush();
    try {
      await expect(listVms({ hypervisorId: "hv-err" })).rejects.toMatchObject({
        code: ErrorCode.Internal,
        message: "hypervisor hv-err: inventory walk failed",
      });
    } finally {
      sub.unsubscribe();
    }
  });

  describe("malformed requests", () => {
    let hv: Awaited<ReturnType<typeof fakeHypervisor>>;
    beforeAll(async () => {
      hv = await fakeHypervisor("hv-m", [vm("vm-1", "a", [])]);
    });
    afterAll(() => hv.stop());

    const cases: Array<{ name: string } & MalformedProbe<MessageDef>> = [
      { name: "hosts", subject: brokerSubjects.hosts(), request: ListHostsRequest, valid: { hypervisorId: "hv-m" }, invalid: { hypervisorId: "a.b" }, response: ListHostsResponse, other: GetVmRequest },
      { name: "vms", subject: brokerSubjects.vms(), request: ListVmsRequest, valid: { hypervisorId: "hv-m" }, invalid: { hypervisorId: "hv-m", selectors: "all" }, response: ListVmsResponse, other: GetVmRequest },
      { name: "vm", subject: brokerSubjects.vm(), request: GetVmRequest, valid: { hypervisorId: "hv-m", vmId: "vm-1" }, invalid: { hypervisorId: "hv-m" }, response: GetVmResponse, other: ListHostsRequest },
      { name: "invalidate", subject: brokerSubjects.invalidate(), request: InvalidateRequest, valid: {}, invalid: { hypervisorId: 42 }, response: InvalidateResponse, other: GetVmRequest },
    ];
    for (const { name, ...probe } of cases) {
      it(`answers garbage, a wrong message type and version 99 on ${name} with error replies, then still serves`, async () => {
        await expectMalformedRefused(nc, probe);
      });
    }
  });
});
