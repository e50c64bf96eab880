import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats } from "../../lib/nats.js";
import { request } from "../../lib/rpc.js";
import {
  AgentFreezeRequest,
  AgentFreezeResponse,
  AgentInfoRequest,
  AgentInfoResponse,
  AgentThawRequest,
  AgentThawResponse,
  InventoryRequest,
  InventoryResponse,
  ServiceName,
  SimSnapshotImagesRequest,
  SimSnapshotImagesResponse,
  SimStatusRequest,
  SimStatusResponse,
  SimVerb,
  SimWorkloadRequest,
  SimWorkloadResponse,
  SnapshotCreateRequest,
  SnapshotCreateResponse,
  SnapshotListRequest,
  SnapshotListResponse,
  SnapshotRemoveRequest,
  SnapshotRemoveResponse,
  VmCreateRequest,
  VmCreateResponse,
  decodeReply,
  encode,
  guestAgentSubjects,
  hypervisorSubjects,
  isFerryError,
  packValue,
} from "../../protocol/mod.js";
import { demoSimulatorConfig } from "../../simulators/demo.js";
import { start, type SimulatorHandle } from "../../simulators/main.js";
import { startTestNats } from "../harness/nats.js";

const MiB = 1024 * 1024;
const HV = "sim-1";
let nats: Awaited<ReturnType<typeof startTestNats>>;
let nc: NatsConnection;
let simulator: SimulatorHandle;
let dir: string;

beforeAll(async () => {
  nats = await startTestNats();
  dir = mkdtempSync(join(tmpdir(), "ferry-simnats-"));
  const config = demoSimulatorConfig({ dir, vms: 2, diskSizeBytes: 8 * MiB, seed: 3, hypervisorId: HV });
  simulator = await start({ config, natsUrl: nats.url, log: pino({ level: "silent" }) });
  nc = await connectNats({ servers: nats.url, name: "simulator-test" });
});

afterAll(async () => {
  await nc?.close();
  await simulator?.stop();
  await nats?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const hv = {
  inventory: () => request(nc, hypervisorSubjects.inventory(HV), InventoryRequest, {}, InventoryResponse),
  create: (vmId: string) => request(nc, hypervisorSubjects.snapshotCreate(HV), SnapshotCreateRequest, { vmId, name: "test", sessionId: "sess-1" }, SnapshotCreateResponse),
  remove: (vmId: string, snapshotId: string) => request(nc, hypervisorSubjects.snapshotRemove(HV), SnapshotRemoveRequest, { vmId, snapshotId }, SnapshotRemoveResponse),
  list: (vmId?: string) => request(nc, hypervisorSubjects.snapshotList(HV), SnapshotListRequest, vmId ? { vmId } : {}, SnapshotListResponse),
  status: () => request(nc, hypervisorSubjects.sim(HV, SimVerb.status), SimStatusRequest, {}, SimStatusResponse),
};

describe("simulator over NATS", () => {
  it("registers both simulators with the services API, naming the hypervisor", async () => {
    const client = new Svcm(nc).client();
    const infos = [];
    for await (const info of await client.info()) infos.push(info);
    const names = infos.map((i) => i.name).sort();
    expect(names).toEqual([ServiceName.guestSimulator, ServiceName.hypervisorSimulator]);
    expect(infos.every((i) => i.metadata?.hypervisorId === HV)).toBe(true);
  });

  it("serves the inventory: hosts, the datastore and the demo VMs with their disks", async () => {
    const { inventory } = await hv.inventory();
    expect(inventory.hypervisorId).toBe(HV);
    expect(inventory.hosts.map((h) => h.id)).toEqual(["host-1", "host-2"]);
    expect(inventory.datastores).toHaveLength(1);
    expect(inventory.vms.map((v) => [v.id, v.disks.length, v.guestAgent])).toEqual([
      ["vm-1", 2, true],
      ["vm-2", 1, false],
    ]);
    expect(inventory.vms[0]!.disks[0]!.sizeBytes).toBe(8 * MiB);
  });

  it("creates a snapshot whose file transport is the frozen base, and commits writes made meanwhile on remove", async () => {
    const { snapshot } = await hv.create("vm-2");
    const path = snapshot.disks[0]!.transport.path;
    const atSnapshot = readFileSync(path);
    expect((await hv.list("vm-2")).snapshots).toEqual([expect.objectContaining({ id: snapshot.id, sessionId: "sess-1" })]);
    await request(nc, hypervisorSubjects.sim(HV, SimVerb.workload), SimWorkloadRequest, { vmId: "vm-2", bytesPerSec: 4 * MiB }, SimWorkloadResponse);
    await new Promise((r) => setTimeout(r, 600));
    await request(nc, hypervisorSubjects.sim(HV, SimVerb.workload), SimWorkloadRequest, { vmId: "vm-2", bytesPerSec: 0 }, SimWorkloadResponse);
    const status = (await hv.status()).vms.find((v) => v.vmId === "vm-2")!;
    expect(status.snapshotId).toBe(snapshot.id);
    expect(status.bytesWrittenDuringSnapshot).toBeGreaterThan(0);
    expect(readFileSync(path).equals(atSnapshot)).toBe(true);

    const { mergedBytes } = await hv.remove("vm-2", snapshot.id);
    expect(mergedBytes).toBeGreaterThan(0);
    expect(readFileSync(path).equals(atSnapshot)).toBe(false);
    const { images } = await request(nc, hypervisorSubjects.sim(HV, SimVerb.snapshotImages), SimSnapshotImagesRequest, { vmId: "vm-2", snapshotId: snapshot.id }, SimSnapshotImagesResponse);
    expect(readFileSync(images[0]!.path).equals(atSnapshot)).toBe(true);
    expect((await hv.list("vm-2")).snapshots).toEqual([]);
  });

  it("answers a second snapshot with conflict and unknown VMs or snapshots with not_found", async () => {
    const { snapshot } = await hv.create("vm-1");
    await expect(hv.create("vm-1")).rejects.toSatisfy((e) => isFerryError(e, "conflict"));
    await expect(hv.create("vm-404")).rejects.toSatisfy((e) => isFerryError(e, "not_found"));
    await expect(hv.remove("vm-1", "snap-unknown")).rejects.toSatisfy((e) => isFerryError(e, "not_found"));
    expect((await hv.remove("vm-1", snapshot.id)).mergedBytes).toBe(0);
  });

  it("makes a new VM with writable, empty, sparse disk files", async () => {
    const res = await request(nc, hypervisorSubjects.vmCreate(HV), VmCreateRequest, { name: "restored-vm-1", disks: [{ label: "Hard disk 1", sizeBytes: 8 * MiB }] }, VmCreateResponse);
    expect(res.vm).toMatchObject({ name: "restored-vm-1", powerState: "poweredOff" });
    const transport = res.disks[0]!.transport;
    expect(statSync(transport.path).size).toBe(8 * MiB);
    expect(statSync(transport.path).mode & 0o200).not.toBe(0);
    expect((await hv.inventory()).inventory.vms.map((v) => v.id)).toContain(res.vm.id);
  });

  it("answers malformed messages with an error reply and keeps serving", async () => {
    const garbage = await nc.request(hypervisorSubjects.snapshotCreate(HV), Buffer.from([0xc1, 0xff, 0x00]), { timeout: 5_000 });
    expect(() => decodeReply(SnapshotCreateResponse, garbage.data)).toThrow(expect.objectContaining({ code: "bad_request" }));
    const wrongShape = await nc.request(hypervisorSubjects.snapshotCreate(HV), encode(SnapshotCreateRequest, { vmId: "vm 1!", name: "" } as never), { timeout: 5_000 });
    expect(() => decodeReply(SnapshotCreateResponse, wrongShape.data)).toThrow(/field vmId/);
    const wrongVersion = await nc.request(guestAgentSubjects.info("vm-1"), packValue({ v: 99, type: "agent.info.req" }), { timeout: 5_000 });
    expect(() => decodeReply(AgentInfoResponse, wrongVersion.data)).toThrow(expect.objectContaining({ code: "unsupported_version" }));
    expect((await hv.inventory()).inventory.vms.length).toBeGreaterThanOrEqual(2);
    expect((await request(nc, guestAgentSubjects.info("vm-1"), AgentInfoRequest, {}, AgentInfoResponse)).vmId).toBe("vm-1");
  });

  it("serves the guest agent of the app-aware VM: info, freeze and thaw", async () => {
    const info = await request(nc, guestAgentSubjects.info("vm-1"), AgentInfoRequest, {}, AgentInfoResponse);
    expect(info.applications).toEqual([expect.objectContaining({ name: "sqlserver", kind: "database", state: "running" })]);
    const frozen = await request(nc, guestAgentSubjects.freeze("vm-1"), AgentFreezeRequest, { freezeId: "frz-1", timeoutMs: 10_000 }, AgentFreezeResponse);
    expect(frozen.applications[0]!.state).toBe("frozen");
    const thawed = await request(nc, guestAgentSubjects.thaw("vm-1"), AgentThawRequest, { freezeId: "frz-1" }, AgentThawResponse);
    expect(thawed).toMatchObject({ freezeId: "frz-1", expired: false });
    expect(thawed.applications[0]!.state).toBe("running");
    await expect(request(nc, guestAgentSubjects.thaw("vm-1"), AgentThawRequest, { freezeId: "frz-unknown" }, AgentThawResponse)).rejects.toSatisfy((e) =>
      isFerryError(e, "not_found"),
    );
    // A VM without a guest section has no agent: nobody answers.
    await expect(request(nc, guestAgentSubjects.info("vm-2"), AgentInfoRequest, {}, AgentInfoResponse, { timeoutMs: 1_000 })).rejects.toSatisfy((e) =>
      isFerryError(e, "unavailable") || isFerryError(e, "timeout"),
    );
  });
});
