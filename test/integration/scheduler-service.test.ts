import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../../lib/actor.js";
import { request } from "../../lib/rpc.js";
import {
  AssignRequest,
  AssignResponse,
  Discover,
  ErrorCode,
  MoverHeartbeat,
  PROTOCOL_VERSION,
  ReleaseRequest,
  ReleaseResponse,
  StatusRequest,
  StatusResponse,
  decode,
  encode,
  packValue,
  schedulerSubjects,
  type BodyIn,
  type MessageDef,
} from "../../protocol/mod.js";
import { start } from "../../actors/scheduler/main.js";
import { expectMalformedRefused, type MalformedProbe } from "../harness/malformed.js";
import { startTestNats } from "../harness/nats.js";

let nats: Awaited<ReturnType<typeof startTestNats>>;
let nc: NatsConnection;
let scheduler: Actor;
const discovers: string[] = [];

type HeartbeatBody = BodyIn<typeof MoverHeartbeat>;

function heartbeat(moverId: string, role: "source" | "target", extra: Partial<HeartbeatBody> = {}): void {
  const body: HeartbeatBody = {
    moverId,
    role,
    host: "test",
    maxTasks: 1,
    activeTasks: [],
    state: "serving",
    startedAt: Date.now(),
    sentAt: Date.now(),
    ...(role === "target" ? { repositoryId: "r1" } : {}),
    ...extra,
  };
  nc.publish(schedulerSubjects.heartbeat(role === "source" ? "src" : "tgt", moverId), encode(MoverHeartbeat, body));
}

/** A fake mover that heartbeats every 100 ms with whatever `activeTasks` the test sets. */
function beatingMover(moverId: string, role: "source" | "target", extra: Partial<HeartbeatBody> = {}) {
  const state = { activeTasks: [] as string[] };
  const beat = () => heartbeat(moverId, role, { ...extra, activeTasks: state.activeTasks });
  beat();
  const timer = setInterval(beat, 100);
  return { state, stop: () => clearInterval(timer) };
}

const status = () => request(nc, schedulerSubjects.status(), StatusRequest, {}, StatusResponse);
const assign = (body: BodyIn<typeof AssignRequest>, timeoutMs = 10_000) =>
  request(nc, schedulerSubjects.assign(), AssignRequest, body, AssignResponse, { timeoutMs });
const release = (taskId: string) => request(nc, schedulerSubjects.release(), ReleaseRequest, { taskId }, ReleaseResponse);

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function moversOnline(...ids: string[]): Promise<void> {
  await waitFor(`movers ${ids.join(", ")} online`, async () => {
    const s = await status();
    return ids.every((id) => s.movers.some((m) => m.moverId === id && m.online)) ? true : undefined;
  });
}

beforeAll(async () => {
  nats = await startTestNats();
  nc = await connect({ servers: nats.url });
  // Listening before the scheduler starts, like a running mover would.
  nc.subscribe(schedulerSubjects.discover(), {
    callback: (_e, m) => {
      discovers.push(decode(Discover, m.data).schedulerId);
    },
  });
  await nc.flush();
  scheduler = await start({ id: "sched-1", natsUrl: nats.url }, { graceMs: 800, offlineAfterMs: 1_000, tickMs: 100 });
});

afterAll(async () => {
  await scheduler?.stop();
  await nc?.close();
  await nats?.stop();
});

describe("scheduler over NATS", () => {
  it("asks movers to announce themselves when it starts", async () => {
    await waitFor("a discover", async () => (discovers.length > 0 ? true : undefined));
    expect(discovers).toContain("sched-1");
  });

  it("assigns, queues with a reason, wakes a long-polling assign on release, and releases idempotently", async () => {
    const proxy = beatingMover("px-a", "source", { maxTasks: 1 });
    const target = beatingMover("tm-a", "target", { maxTasks: 4, repositoryId: "ra" });
    try {
      await moversOnline("px-a", "tm-a");
      const first = await assign({ sessionId: "s1", taskId: "a-1", repositoryId: "ra", proxies: ["px-a"], waitMs: 0 });
      expect(first).toMatchObject({ status: "assigned", assignment: { taskId: "a-1", proxyId: "px-a", targetMoverId: "tm-a", repositoryId: "ra" } });
      proxy.state.activeTasks = ["a-1"];
      target.state.activeTasks = ["a-1"];

      const queued = await assign({ sessionId: "s1", taskId: "a-2", repositoryId: "ra", proxies: ["px-a"], waitMs: 100 });
      expect(queued).toMatchObject({ status: "queued", position: 1, reason: "all 1 slots of proxies px-a busy" });

      // Asking again with the same task id returns the same assignment.
      const again = await assign({ sessionId: "s1", taskId: "a-1", repositoryId: "ra", proxies: ["px-a"], waitMs: 0 });
      expect(again.assignment).toEqual(first.assignment);

      const started = Date.now();
      const pending = assign({ sessionId: "s1", taskId: "a-2", repositoryId: "ra", proxies: ["px-a"], waitMs: 5_000 });
      await new Promise((r) => setTimeout(r, 200));
      expect(await release("a-1")).toMatchObject({ released: true });
      const woken = await pending;
      expect(woken).toMatchObject({ status: "assigned", assignment: { taskId: "a-2", proxyId: "px-a" } });
      expect(Date.now() - started).toBeLessThan(4_000);

      expect(await release("a-1")).toMatchObject({ released: false });
      expect(await release("a-2")).toMatchObject({ released: true });
    } finally {
      proxy.stop();
      target.stop();
    }
  });

  it("queues a task for a repository nobody serves, saying so", async () => {
    const res = await assign({ sessionId: "s2", taskId: "nobody-1", repositoryId: "r-none", waitMs: 50 });
    expect(res).toMatchObject({ status: "queued", reason: expect.stringContaining("no target mover online for repository r-none") });
    expect(await release("nobody-1")).toMatchObject({ released: true });
  });

  it("shows movers, assignments and the queue in status", async () => {
    const proxy = beatingMover("px-s", "source", { maxTasks: 2 });
    const target = beatingMover("tm-s", "target", { maxTasks: 1, repositoryId: "rs" });
    try {
      await moversOnline("px-s", "tm-s");
      await assign({ sessionId: "s3", taskId: "s-1", repositoryId: "rs", proxies: ["px-s"], waitMs: 0 });
      await assign({ sessionId: "s3", taskId: "s-2", repositoryId: "rs", proxies: ["px-s"], priority: 80, waitMs: 0 });
      const s = await status();
      expect(s.movers).toContainEqual(expect.objectContaining({ moverId: "px-s", role: "source", maxTasks: 2, usedSlots: 1, online: true }));
      expect(s.movers).toContainEqual(expect.objectContaining({ moverId: "tm-s", role: "target", repositoryId: "rs", usedSlots: 1 }));
      expect(s.assignments).toContainEqual(expect.objectContaining({ taskId: "s-1", sessionId: "s3" }));
      expect(s.queue).toContainEqual(expect.objectContaining({ taskId: "s-2", sessionId: "s3", priority: 80 }));
      await release("s-1");
      await release("s-2");
    } finally {
      proxy.stop();
      target.stop();
    }
  });

  it("reclaims the slots of a task its movers never report running", async () => {
    const proxy = beatingMover("px-r", "source", { maxTasks: 1 });
    const target = beatingMover("tm-r", "target", { maxTasks: 1, repositoryId: "rr" });
    try {
      await moversOnline("px-r", "tm-r");
      const res = await assign({ sessionId: "s4", taskId: "leak-1", repositoryId: "rr", proxies: ["px-r"], waitMs: 0 });
      expect(res.status).toBe("assigned");
      // Grace is 800 ms here; the movers keep beating without the task.
      await waitFor("the leaked assignment to be reclaimed", async () =>
        (await status()).assignments.some((a) => a.taskId === "leak-1") ? undefined : true,
      );
      expect(await release("leak-1")).toMatchObject({ released: false });
      expect((await assign({ sessionId: "s4", taskId: "leak-2", repositoryId: "rr", proxies: ["px-r"], waitMs: 0 })).status).toBe("assigned");
      await release("leak-2");
    } finally {
      proxy.stop();
      target.stop();
    }
  });

  it("releases the assignments of a mover that goes silent", async () => {
    const proxy = beatingMover("px-o", "source", { maxTasks: 1 });
    const target = beatingMover("tm-o", "target", { maxTasks: 1, repositoryId: "ro" });
    try {
      await moversOnline("px-o", "tm-o");
      const res = await assign({ sessionId: "s5", taskId: "off-1", repositoryId: "ro", proxies: ["px-o"], waitMs: 0 });
      expect(res.status).toBe("assigned");
      proxy.state.activeTasks = ["off-1"];
      target.state.activeTasks = ["off-1"];
      proxy.stop();
      await waitFor("the silent proxy to go offline", async () => {
        const s = await status();
        const px = s.movers.find((m) => m.moverId === "px-o");
        return px && !px.online && !s.assignments.some((a) => a.taskId === "off-1") ? true : undefined;
      });
    } finally {
      proxy.stop();
      target.stop();
    }
  });

  it("ignores a malformed heartbeat and keeps serving", async () => {
    nc.publish(schedulerSubjects.heartbeat("src", "px-bad"), Buffer.from("garbage"));
    nc.publish(schedulerSubjects.heartbeat("src", "px-bad"), packValue({ v: PROTOCOL_VERSION, type: MoverHeartbeat.type, moverId: "px-bad" }));
    // A valid heartbeat on another mover's subject is not believed either.
    nc.publish(
      schedulerSubjects.heartbeat("tgt", "px-bad"),
      encode(MoverHeartbeat, { moverId: "px-bad", role: "source", host: "h", maxTasks: 1, activeTasks: [], state: "serving", startedAt: 1, sentAt: 1 }),
    );
    heartbeat("px-good", "source");
    await moversOnline("px-good");
    expect((await status()).movers.some((m) => m.moverId === "px-bad")).toBe(false);
  });

  describe("malformed requests", () => {
    const cases: Array<{ name: string } & MalformedProbe<MessageDef>> = [
      {
        name: "assign",
        subject: schedulerSubjects.assign(),
        request: AssignRequest,
        valid: { sessionId: "m1", taskId: "m-1", repositoryId: "r-x", priority: 50, needsProxy: true, proxies: [], waitMs: 0 },
        invalid: { sessionId: "m1", taskId: "not a token!", repositoryId: "r-x" },
        response: AssignResponse,
        other: ReleaseRequest,
      },
      { name: "release", subject: schedulerSubjects.release(), request: ReleaseRequest, valid: { taskId: "m-1" }, invalid: { taskId: 7 }, response: ReleaseResponse, other: StatusRequest },
      { name: "status", subject: schedulerSubjects.status(), request: StatusRequest, valid: {}, response: StatusResponse, other: ReleaseRequest },
    ];
    for (const { name, ...probe } of cases) {
      it(`answers garbage, a wrong message type and version 99 on ${name} with error replies, then still serves`, async () => {
        await expectMalformedRefused(nc, probe);
      });
    }
  });

  // Last: it stops the scheduler the other tests share.
  it("answers a waiting assign at once, still queued, when it drains", async () => {
    const pending = assign({ sessionId: "s9", taskId: "drain-1", repositoryId: "r-none", waitMs: 5_000 });
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    const stopped = scheduler.stop();
    expect(await pending).toMatchObject({ status: "queued", position: 1 });
    expect(Date.now() - started).toBeLessThan(2_000);
    await stopped;
  });
});
