import { randomBytes } from "node:crypto";
import type { Msg as NatsMsg, Subscription } from "@nats-io/nats-core";
import { Svcm, type ServiceInfo } from "@nats-io/services";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "../../lib/rpc.js";
import {
  ActiveSessionsRequest,
  ActiveSessionsResponse,
  ErrorCode,
  ErrorReply,
  JobTrigger,
  ListVmsRequest,
  ListVmsResponse,
  QuiesceRequest,
  QuiesceResponse,
  RepositoryInfoRequest,
  RepositoryInfoResponse,
  SERVICE_NAME_OF_ROLE,
  ServiceName,
  StatusRequest,
  StatusResponse,
  TaskCancelRequest,
  TaskCancelResponse,
  ThawRequest,
  ThawResponse,
  TriggerRejectedEvent,
  brokerSubjects,
  decode,
  encode,
  guestProcessorSubjects,
  managerSubjects,
  packValue,
  repositorySubjects,
  schedulerSubjects,
  sourceMoverSubjects,
  targetMoverSubjects,
  triggerSubjects,
  unpackValue,
  validate,
  type Msg,
} from "../../protocol/mod.js";
import { demoSimulatorConfig } from "../../simulators/demo.js";
import { MiB, startE2EStack, uniqueRequestId, type E2EStack } from "../harness/stack.js";

/**
 * Invariant 7 on the running stack: every request subject of every actor (found through
 * `$SRV.INFO`, not from a list in this test) answers garbage and messages of an unknown protocol
 * version with an error reply, and the actor keeps serving; the manager rejects malformed triggers
 * and still runs a valid one.
 */

const ACTOR_SERVICES = Object.values(SERVICE_NAME_OF_ROLE);
// Not actors, but reached the same way and documented to validate the same way.
const SIMULATOR_SERVICES = [ServiceName.hypervisorSimulator, ServiceName.guestSimulator];

/** Never a valid msgpack start byte (0xc1), then noise. */
const GARBAGE = Buffer.concat([Buffer.from([0xc1]), randomBytes(31)]);
const WRONG_VERSION = packValue({ v: 99, type: "e2e.future.message", anything: true });
/** A well-formed envelope whose body fits no endpoint's schema. */
const WRONG_SHAPE = packValue({ v: 1, type: "e2e.not.a.request", sessionId: 42 });

interface ErrorAnswer {
  header: string | undefined;
  headerCode: string | undefined;
  code: string;
  message: string;
}

async function errorAnswer(e2e: E2EStack, subject: string, data: Uint8Array): Promise<ErrorAnswer> {
  const reply: NatsMsg = await e2e.nc.request(subject, data, { timeout: 5_000 });
  const body = validate(ErrorReply, unpackValue(reply.data));
  return {
    header: reply.headers?.get("Nats-Service-Error") || undefined,
    headerCode: reply.headers?.get("Nats-Service-Error-Code") || undefined,
    code: body.error.code,
    message: body.error.message,
  };
}

async function infos(e2e: E2EStack, name: string): Promise<ServiceInfo[]> {
  const out: ServiceInfo[] = [];
  for await (const info of await new Svcm(e2e.nc).client({ strategy: "stall", stall: 100, maxWait: 3_000 }).info(name)) out.push(info);
  return out;
}

async function pingIds(e2e: E2EStack, name: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const identity of await new Svcm(e2e.nc).client({ strategy: "stall", stall: 100, maxWait: 3_000 }).ping(name)) {
    ids.push(identity.metadata?.id ?? identity.metadata?.hypervisorId ?? "?");
  }
  return ids.sort();
}

describe("malformed messages to every actor", () => {
  let e2e: E2EStack;

  beforeAll(async () => {
    e2e = await startE2EStack({ name: "malformed", simulatorConfig: (dir) => demoSimulatorConfig({ dir, vms: 2, diskSizeBytes: 8 * MiB }) });
    await e2e.putJob({ id: "valid", hypervisor: "sim-1", repository: e2e.stack.repositoryId, vms: [{ id: "vm-2" }] });
  });

  afterAll(async () => {
    await e2e?.stop();
  });

  it("answers garbage, an unknown version and a wrong shape on every endpoint with an error reply, and keeps serving", async () => {
    let endpointsProbed = 0;
    for (const name of [...ACTOR_SERVICES, ...SIMULATOR_SERVICES]) {
      const found = await infos(e2e, name);
      expect(found.length, `${name} answers $SRV.INFO`).toBe(1);
      const endpoints = found[0]!.endpoints;
      expect(endpoints.length, `${name} has endpoints`).toBeGreaterThan(0);
      for (const endpoint of endpoints) {
        const where = `${name} ${endpoint.name} (${endpoint.subject})`;
        expect(endpoint.subject, `${where} is a concrete subject`).not.toMatch(/[*>]/);

        const garbage = await errorAnswer(e2e, endpoint.subject, GARBAGE);
        expect(garbage.code, where).toBe(ErrorCode.BadRequest);
        expect(garbage.header, where).toBeTruthy();
        expect(garbage.headerCode, where).toBe("400");

        const future = await errorAnswer(e2e, endpoint.subject, WRONG_VERSION);
        expect(future.code, where).toBe(ErrorCode.UnsupportedVersion);
        expect(future.message, where).toMatch(/99/);
        expect(future.header, where).toBeTruthy();
        expect(future.headerCode, where).toBe("400");

        const shape = await errorAnswer(e2e, endpoint.subject, WRONG_SHAPE);
        expect(shape.code, where).toBe(ErrorCode.BadRequest);
        expect(shape.header, where).toBeTruthy();
        endpointsProbed++;
      }
    }
    // manager 2, scheduler 3, broker 4, guest-processor 2, source mover 3, target mover 9, at least.
    expect(endpointsProbed).toBeGreaterThanOrEqual(23);

    for (const proc of e2e.stack.processes) {
      expect(proc.child.exitCode, `${proc.name} still runs`).toBeNull();
      expect(await pingIds(e2e, proc.serviceName), `${proc.name} answers $SRV.PING`).toContain(proc.id);
    }
  });

  it("still serves valid requests on every actor afterwards", async () => {
    const active = await request(e2e.nc, managerSubjects.active("manager"), ActiveSessionsRequest, {}, ActiveSessionsResponse);
    expect(active.managerId).toBe("manager");

    const status: Msg<typeof StatusResponse> = await request(e2e.nc, schedulerSubjects.status(), StatusRequest, {}, StatusResponse);
    expect(status.movers.map((m) => m.moverId).sort()).toEqual(["proxy-1", "repo-1-mover"]);

    const vms = await request(e2e.nc, brokerSubjects.vms(), ListVmsRequest, { hypervisorId: "sim-1" }, ListVmsResponse);
    expect(vms.vms.map((v) => v.id).sort()).toEqual(["vm-1", "vm-2"]);

    const quiesced = await request(e2e.nc, guestProcessorSubjects.quiesce(), QuiesceRequest, { sessionId: "e2e-probe", vmId: "vm-1", freezeTimeoutMs: 10_000 }, QuiesceResponse);
    expect(quiesced.applications.map((a) => a.state)).toEqual(["frozen"]);
    const thawed = await request(e2e.nc, guestProcessorSubjects.thaw(), ThawRequest, { sessionId: "e2e-probe", vmId: "vm-1", freezeId: quiesced.freezeId }, ThawResponse);
    expect(thawed.consistent).toBe(true);

    const srcCancel = await request(e2e.nc, sourceMoverSubjects.taskCancel("proxy-1"), TaskCancelRequest, { taskId: "no-such-task" }, TaskCancelResponse);
    expect(srcCancel.canceled).toBe(false);
    const tgtCancel = await request(e2e.nc, targetMoverSubjects.taskCancel("repo-1-mover"), TaskCancelRequest, { taskId: "no-such-task" }, TaskCancelResponse);
    expect(tgtCancel.canceled).toBe(false);
    const info = await request(e2e.nc, repositorySubjects.info(e2e.stack.repositoryId), RepositoryInfoRequest, {}, RepositoryInfoResponse);
    expect(info.repositoryId).toBe(e2e.stack.repositoryId);
  });

  it("rejects malformed triggers with an event and still runs a valid trigger after them", async () => {
    const rejected: Array<Msg<typeof TriggerRejectedEvent>> = [];
    const sub: Subscription = e2e.nc.subscribe(managerSubjects.triggerRejected(), {
      callback: (err, msg) => {
        if (!err) rejected.push(decode(TriggerRejectedEvent, msg.data));
      },
    });
    try {
      await e2e.nc.flush();
      const jobSubject = triggerSubjects.job("valid");
      const bad = [
        { data: GARBAGE, code: ErrorCode.BadRequest },
        { data: packValue({ v: 99, type: JobTrigger.type, jobId: "valid", requestId: "future", requestedBy: "e2e", requestedAt: Date.now() }), code: ErrorCode.UnsupportedVersion },
        // Valid JobTrigger, but for another job than its subject names.
        { data: encode(JobTrigger, { jobId: "other-job", requestId: uniqueRequestId("mismatch"), requestedBy: "e2e", requestedAt: Date.now() }), code: ErrorCode.BadRequest },
      ];
      const seqs: number[] = [];
      for (const [i, b] of bad.entries()) {
        const ack = await e2e.js.publish(jobSubject, b.data, { msgID: uniqueRequestId(`malformed-${i}`) });
        seqs.push(ack.seq);
      }

      const deadline = Date.now() + 15_000;
      while (seqs.some((seq) => !rejected.some((r) => r.streamSeq === seq)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      for (const [i, seq] of seqs.entries()) {
        const event = rejected.find((r) => r.streamSeq === seq);
        expect(event, `rejection of malformed trigger #${i} (stream seq ${seq})`).toBeDefined();
        expect(event!.subject).toBe(jobSubject);
        expect(event!.error.code).toBe(bad[i]!.code);
      }
      // None of them made a session.
      expect((await e2e.sessions.list()).filter((s) => s.jobId === "valid" || s.jobId === "other-job")).toEqual([]);
    } finally {
      sub.unsubscribe();
    }

    const session = await e2e.runJob("valid");
    expect(session.result).toBe("success");
    expect(session.vms.map((v) => v.vmId)).toEqual(["vm-2"]);
    expect(session.vms[0]!.restorePointId).toBeDefined();
  });
});
