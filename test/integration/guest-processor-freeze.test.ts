import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../../lib/actor.js";
import { request } from "../../lib/rpc.js";
import {
  AgentFreezeRequest,
  AgentFreezeResponse,
  AgentThawRequest,
  AgentThawResponse,
  ErrorCode,
  QuiesceRequest,
  QuiesceResponse,
  ThawRequest,
  ThawResponse,
  decode,
  encode,
  encodeError,
  guestAgentSubjects,
  guestProcessorSubjects,
} from "../../protocol/mod.js";
import { start } from "../../actors/guest-processor/main.js";
import { expectMalformedRefused } from "../harness/malformed.js";
import { startTestNats } from "../harness/nats.js";

let nats: Awaited<ReturnType<typeof startTestNats>>;
let nc: NatsConnection;
let processor: Actor;

/**
 * A fake in-guest agent for one VM, listening when this resolves: freezes its one application for
 * `timeoutMs`, after which it counts the freeze as expired (as a guest that thawed itself would).
 */
async function fakeAgent(vmId: string) {
  const freezes = new Map<string, { frozenAt: number; timeoutMs: number }>();
  const log = { freezes: [] as Array<{ freezeId: string; timeoutMs: number }>, thaws: [] as string[] };
  const app = (state: "running" | "frozen") => [{ name: "pg", kind: "postgresql", state }];
  const subs = [
    nc.subscribe(guestAgentSubjects.freeze(vmId), {
      callback: (_err, msg) => {
        const req = decode(AgentFreezeRequest, msg.data);
        log.freezes.push({ freezeId: req.freezeId, timeoutMs: req.timeoutMs });
        const frozenAt = Date.now();
        freezes.set(req.freezeId, { frozenAt, timeoutMs: req.timeoutMs });
        msg.respond(encode(AgentFreezeResponse, { freezeId: req.freezeId, frozenAt, applications: app("frozen") }));
      },
    }),
    nc.subscribe(guestAgentSubjects.thaw(vmId), {
      callback: (_err, msg) => {
        const req = decode(AgentThawRequest, msg.data);
        log.thaws.push(req.freezeId);
        const freeze = freezes.get(req.freezeId);
        freezes.delete(req.freezeId);
        const frozenMs = freeze ? Date.now() - freeze.frozenAt : 0;
        msg.respond(
          encode(AgentThawResponse, {
            freezeId: req.freezeId,
            expired: !freeze || frozenMs > freeze.timeoutMs,
            frozenMs: freeze ? Math.min(frozenMs, freeze.timeoutMs) : 0,
            applications: app("running"),
          }),
        );
      },
    }),
  ];
  await nc.flush();
  return { log, stop: () => subs.forEach((s) => s.unsubscribe()) };
}

const quiesce = (vmId: string, freezeTimeoutMs = 10_000) =>
  request(nc, guestProcessorSubjects.quiesce(), QuiesceRequest, { sessionId: "sess-1", vmId, freezeTimeoutMs }, QuiesceResponse);
const thaw = (vmId: string, freezeId: string) =>
  request(nc, guestProcessorSubjects.thaw(), ThawRequest, { sessionId: "sess-1", vmId, freezeId }, ThawResponse);

beforeAll(async () => {
  nats = await startTestNats();
  nc = await connect({ servers: nats.url });
  processor = await start({ id: "gp-1", natsUrl: nats.url }, { freezeRequestTimeoutMs: 2_000, thawRequestTimeoutMs: 2_000 });
});

afterAll(async () => {
  await processor?.stop();
  await nc?.close();
  await nats?.stop();
});

describe("guest processor over NATS", () => {
  it("quiesces through the VM's agent and thaws consistently within the freeze timeout", async () => {
    const agent = await fakeAgent("vm-q");
    try {
      const q = await quiesce("vm-q", 10_000);
      expect(q.vmId).toBe("vm-q");
      expect(q.applications).toEqual([{ name: "pg", kind: "postgresql", state: "frozen" }]);
      expect(agent.log.freezes).toEqual([{ freezeId: q.freezeId, timeoutMs: 10_000 }]);

      const t = await thaw("vm-q", q.freezeId);
      expect(t).toMatchObject({ vmId: "vm-q", consistent: true, applications: [{ name: "pg", state: "running" }] });
      expect(agent.log.thaws).toEqual([q.freezeId]);
    } finally {
      agent.stop();
    }
  });

  it("reports a thaw after the freeze expired as not consistent", async () => {
    const agent = await fakeAgent("vm-x");
    try {
      const q = await quiesce("vm-x", 1_000);
      await new Promise((r) => setTimeout(r, 1_200));
      const t = await thaw("vm-x", q.freezeId);
      expect(t.consistent).toBe(false);
    } finally {
      agent.stop();
    }
  });

  it("gives each quiesce its own freeze id", async () => {
    const agent = await fakeAgent("vm-2");
    try {
      const a = await quiesce("vm-2");
      await thaw("vm-2", a.freezeId);
      const b = await quiesce("vm-2");
      await thaw("vm-2", b.freezeId);
      expect(a.freezeId).not.toBe(b.freezeId);
    } finally {
      agent.stop();
    }
  });

  it("answers unavailable when no guest agent answers for the VM", async () => {
    await expect(quiesce("vm-noagent")).rejects.toMatchObject({
      code: ErrorCode.Unavailable,
      message: "no guest agent answers for VM vm-noagent",
    });
  });

  it("passes on an error the agent replies, keeping its code and naming the VM", async () => {
    const sub = nc.subscribe(guestAgentSubjects.freeze("vm-busy"), {
      callback: (_err, msg) => {
        msg.respond(encodeError({ code: ErrorCode.Conflict, message: "VM vm-busy is already frozen by frz-other", retryable: false }));
      },
    });
    await nc.flush();
    try {
      await expect(quiesce("vm-busy")).rejects.toMatchObject({
        code: ErrorCode.Conflict,
        retryable: false,
        message: expect.stringMatching(/guest agent of VM vm-busy failed freeze: .*already frozen/),
      });
    } finally {
      sub.unsubscribe();
    }
  });

  it("thaws the guest when the agent's freeze answer times out, as it may have frozen anyway", async () => {
    const asked: string[] = [];
    const thawed: string[] = [];
    const subs = [
      // Freezes but its answer never arrives.
      nc.subscribe(guestAgentSubjects.freeze("vm-slow"), { callback: (_err, msg) => void asked.push(decode(AgentFreezeRequest, msg.data).freezeId) }),
      nc.subscribe(guestAgentSubjects.thaw("vm-slow"), {
        callback: (_err, msg) => {
          const { freezeId } = decode(AgentThawRequest, msg.data);
          thawed.push(freezeId);
          msg.respond(encode(AgentThawResponse, { freezeId, expired: false, frozenMs: 1, applications: [] }));
        },
      }),
    ];
    await nc.flush();
    try {
      // The freeze timeout (1 s) bounds the wait for the answer.
      await expect(quiesce("vm-slow", 1_000)).rejects.toMatchObject({
        code: ErrorCode.Timeout,
        message: expect.stringContaining("did not answer freeze within 1000 ms"),
      });
      const until = Date.now() + 2_000;
      while (thawed.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(asked).toHaveLength(1);
      expect(thawed).toEqual(asked);
    } finally {
      subs.forEach((s) => s.unsubscribe());
    }
  });

  it("refuses a thaw naming another VM than the freeze's", async () => {
    const agent = await fakeAgent("vm-m");
    try {
      const q = await quiesce("vm-m");
      await expect(thaw("vm-other", q.freezeId)).rejects.toMatchObject({ code: ErrorCode.BadRequest });
      expect((await thaw("vm-m", q.freezeId)).consistent).toBe(true);
    } finally {
      agent.stop();
    }
  });

  describe("malformed requests", () => {
    let agent: Awaited<ReturnType<typeof fakeAgent>>;
    beforeAll(async () => {
      agent = await fakeAgent("vm-mal");
    });
    afterAll(() => agent.stop());

    it("answers garbage, a wrong message type and version 99 on quiesce with error replies, then still serves", async () => {
      const res = await expectMalformedRefused(nc, {
        subject: guestProcessorSubjects.quiesce(),
        request: QuiesceRequest,
        response: QuiesceResponse,
        valid: { sessionId: "sess-1", vmId: "vm-mal", freezeTimeoutMs: 5_000 },
        invalid: { sessionId: "sess-1", vmId: "vm-mal", freezeTimeoutMs: 5 },
        other: ThawRequest,
      });
      await thaw("vm-mal", res.freezeId);
    });

    it("answers garbage, a wrong message type and version 99 on thaw with error replies, then still serves", async () => {
      const { freezeId } = await quiesce("vm-mal", 5_000);
      await expectMalformedRefused(nc, {
        subject: guestProcessorSubjects.thaw(),
        request: ThawRequest,
        response: ThawResponse,
        valid: { sessionId: "sess-1", vmId: "vm-mal", freezeId },
        invalid: { sessionId: "sess-1", vmId: "vm-mal" },
        other: QuiesceRequest,
      });
    });
  });

  it("thaws every active freeze when it drains", async () => {
    const agent = await fakeAgent("vm-d");
    // A processor of its own, so stopping it leaves the shared one serving.
    const draining = await start({ id: "gp-drain", natsUrl: nats.url }, { thawRequestTimeoutMs: 2_000 });
    try {
      const a = await request(nc, guestProcessorSubjects.quiesce(), QuiesceRequest, { sessionId: "s-d", vmId: "vm-d", freezeTimeoutMs: 30_000 }, QuiesceResponse);
      const b = await request(nc, guestProcessorSubjects.quiesce(), QuiesceRequest, { sessionId: "s-d", vmId: "vm-d", freezeTimeoutMs: 30_000 }, QuiesceResponse);
      // Requests went to either processor of the queue group: stop both sides' freezes via drain.
      await draining.stop();
      await processor.stop();
      expect(agent.log.thaws.sort()).toEqual([a.freezeId, b.freezeId].sort());
    } finally {
      agent.stop();
      await draining.stop();
    }
  });
});
