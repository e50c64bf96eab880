import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ErrorCode, PROTOCOL_VERSION, type Assignment } from "../../protocol/mod.js";
import { SlotTable, type AssignAsk, type Heartbeat, type SchedulerEvent } from "../../actors/scheduler/slots.js";

const T0 = 1_700_000_000_000;

function hb(moverId: string, role: "source" | "target", opts: Partial<Heartbeat> = {}): Heartbeat {
  return {
    v: PROTOCOL_VERSION,
    type: "ann.heartbeat",
    moverId,
    role,
    host: "h",
    maxTasks: 2,
    activeTasks: [],
    state: "serving",
    startedAt: T0,
    sentAt: T0,
    ...(role === "target" ? { repositoryId: "r1" } : {}),
    ...opts,
  };
}

function ask(taskId: string, opts: Partial<AssignAsk> = {}): AssignAsk {
  return {
    v: PROTOCOL_VERSION,
    type: "scheduler.assign.req",
    sessionId: "s1",
    taskId,
    priority: 50,
    repositoryId: "r1",
    needsProxy: true,
    proxies: [],
    waitMs: 5_000,
    ...opts,
  };
}

function table(opts: ConstructorParameters<typeof SlotTable>[0] = {}) {
  const events: SchedulerEvent[] = [];
  const t = new SlotTable(opts, (e) => events.push(e));
  return { t, events };
}

function assigned(outcome: ReturnType<SlotTable["ask"]>): Assignment {
  if (outcome.status !== "assigned") throw new Error(`expected assigned, got queued: ${outcome.reason}`);
  return outcome.assignment;
}

describe("scheduler slot table", () => {
  it("assigns a task one target mover slot of its repository and one proxy slot", () => {
    const { t } = table();
    t.heartbeat(hb("p1", "source"), T0);
    t.heartbeat(hb("t1", "target"), T0);
    t.heartbeat(hb("t2", "target", { repositoryId: "r2" }), T0);
    const a = assigned(t.ask(ask("k1", { repositoryId: "r2" }), T0));
    expect(a).toMatchObject({ taskId: "k1", sessionId: "s1", proxyId: "p1", targetMoverId: "t2", repositoryId: "r2", assignedAt: T0 });
    expect(t.usedSlots("source", "p1")).toBe(1);
    expect(t.usedSlots("target", "t2")).toBe(1);
    expect(t.usedSlots("target", "t1")).toBe(0);
  });

  it("assigns a task that needs no proxy to a target mover alone", () => {
    const { t } = table();
    t.heartbeat(hb("t1", "target"), T0);
    const a = assigned(t.ask(ask("k1", { needsProxy: false }), T0));
    expect(a.proxyId).toBeUndefined();
    expect(a.targetMoverId).toBe("t1");
  });

  it("queues with a reason naming the repository when no target mover serves it", () => {
    const { t } = table();
    t.heartbeat(hb("p1", "source"), T0);
    const outcome = t.ask(ask("k1", { repositoryId: "r9" }), T0);
    expect(outcome).toEqual({ status: "queued", position: 1, reason: "no target mover online for repository r9" });
  });

  it("queues with a reason counting the busy proxy slots", () => {
    const { t } = table();
    t.heartbeat(hb("p1", "source", { maxTasks: 2 }), T0);
    t.heartbeat(hb("t1", "target", { maxTasks: 8 }), T0);
    assigned(t.ask(ask("k1"), T0));
    assigned(t.ask(ask("k2"), T0));
    const outcome = t.ask(ask("k3"), T0);
    expect(outcome).toEqual({ status: "queued", position: 1, reason: "all 2 proxy slots busy" });
  });

  it("picks the mover with the most free slots, then the fewest used, then the lowest id", () => {
    const { t } = table();
    t.heartbeat(hb("t1", "target", { maxTasks: 4 }), T0);
    t.heartbeat(hb("pa", "source", { maxTasks: 2 }), T0);
    t.heartbeat(hb("pb", "source", { maxTasks: 3 }), T0);
    t.heartbeat(hb("pc", "source", { maxTasks: 3 }), T0);
    // pb and pc tie on 3 free and 0 used: lowest id.
    expect(assigned(t.ask(ask("k1"), T0)).proxyId).toBe("pb");
    // pc has 3 free, pa and pb 2.
    expect(assigned(t.ask(ask("k2"), T0)).proxyId).toBe("pc");
    // All have 2 free; pa has used none.
    expect(assigned(t.ask(ask("k3"), T0)).proxyId).toBe("pa");
  });

  it("gives a freed slot to the higher-priority queued task before an earlier lower one", () => {
    const { t } = table();
    t.heartbeat(hb("p1", "source", { maxTasks: 1 }), T0);
    t.heartbeat(hb("t1", "target", { maxTasks: 4 }), T0);
    assigned(t.ask(ask("running"), T0));
    expect(t.ask(ask("low", { priority: 10 }), T0 + 1)).toMatchObject({ status: "queued", position: 1 });
    expect(t.ask(ask("high", { priority: 90 }), T0 + 2)).toMatchObject({ status: "queued", position: 1 });
    expect(t.lookup("low")).toMatchObject({ position: 2 });
    t.release("running", T0 + 3);
    expect(t.lookup("high")?.status).toBe("assigned");
    expect(t.lookup("low")).toMatchObject({ status: "queued", position: 1 });
  });

  it("serves tasks of equal priority in arrival order", () => {
    const { t, events } = table();
    t.heartbeat(hb("t1", "target", { maxTasks: 1 }), T0);
    t.heartbeat(hb("p1", "source", { maxTasks: 4 }), T0);
    for (const id of ["a", "b", "c", "d"]) t.ask(ask(id), T0);
    for (const id of ["a", "b", "c"]) t.release(id, T0 + 1);
    const order = events.flatMap((e) => (e.kind === "assigned" ? [e.assignment.taskId] : []));
    expect(order).toEqual(["a", "b", "c", "d"]);
  });

  it("lets a lower task pass a head that waits for a busy repository the lower one does not need", () => {
    const { t } = table();
    t.heartbeat(hb("p1", "source", { maxTasks: 4 }), T0);
    t.heartbeat(hb("t1", "target", { maxTasks: 1 }), T0);
    t.heartbeat(hb("t2", "target", { maxTasks: 1, repositoryId: "r2" }), T0);
    assigned(t.ask(ask("r1-running"), T0));
    expect(t.ask(ask("r1-head", { priority: 90 }), T0).status).toBe("queued");
    const lower = assigned(t.ask(ask("r2-low", { priority: 10, repositoryId: "r2" }), T0));
    expect(lower.targetMoverId).toBe("t2");
  });

  it("does not let a lower task take a free slot the waiting head needs, and the head gets it once its missing slot frees", () => {
    const { t } = table();
    t.heartbeat(hb("p1", "source", { maxTasks: 1 }), T0);
    t.heartbeat(hb("t1", "target", { maxTasks: 2 }), T0);
    assigned(t.ask(ask("backup-running", { priority: 50 }), T0));
    // The head needs a proxy (busy) and a slot of r1 (one free): it holds the r1 slot.
    expect(t.ask(ask("backup-head", { priority: 50 }), T0)).toMatchObject({ status: "queued", reason: "all 1 proxy slots busy" });
    // A verify task needs only that r1 slot: it must not take it.
    expect(t.ask(ask("verify", { priority: 50, needsProxy: false }), T0)).toMatchObject({
      status: "queued",
      position: 2,
      reason: "the free slots of repository r1 are held for tasks ahead in the queue",
    });
    t.release("backup-running", T0 + 1);
    expect(t.lookup("backup-head")?.status).toBe("assigned");
    // backup-running's r1 slot freed too, so the verify task now fits.
    expect(t.lookup("verify")?.status).toBe("assigned");
  });

  it("lets only the first waiter on a busy pool hold slots, so other repositories keep using free proxies", () => {
    const { t } = table();
    t.heartbeat(hb("p1", "source", { maxTasks: 4 }), T0);
    t.heartbeat(hb("t1", "target", { maxTasks: 1 }), T0);
    t.heartbeat(hb("t2", "target", { maxTasks: 4, repositoryId: "r2" }), T0);
    assigned(t.ask(ask("r1-a"), T0));
    for (const id of ["r1-b", "r1-c", "r1-d"]) expect(t.ask(ask(id), T0).status).toBe("queued");
    // p1: 1 used, 1 held by r1-b, so 2 left for r2.
    assigned(t.ask(ask("r2-a", { repositoryId: "r2" }), T0));
    assigned(t.ask(ask("r2-b", { repositoryId: "r2" }), T0));
    expect(t.ask(ask("r2-c", { repositoryId: "r2" }), T0)).toMatchObject({ status: "queued", position: 4 });
  });

  it("holds nothing for a head whose repository has no mover online", () => {
    const { t } = table();
    t.heartbeat(hb("p1", "source", { maxTasks: 1 }), T0);
    t.heartbeat(hb("t2", "target", { repositoryId: "r2" }), T0);
    expect(t.ask(ask("head", { priority: 100, repositoryId: "r-gone" }), T0).status).toBe("queued");
    expect(t.ask(ask("next", { priority: 1, repositoryId: "r2" }), T0).status).toBe("assigned");
  });

  it("uses only the allowed proxies when the task restricts them", () => {
    const { t } = table();
    t.heartbeat(hb("t1", "target", { maxTasks: 4 }), T0);
    t.heartbeat(hb("pa", "source", { maxTasks: 4 }), T0);
    t.heartbeat(hb("pb", "source", { maxTasks: 1 }), T0);
    expect(assigned(t.ask(ask("k1", { proxies: ["pb"] }), T0)).proxyId).toBe("pb");
    expect(t.ask(ask("k2", { proxies: ["pb"] }), T0)).toMatchObject({ status: "queued", reason: "all 1 slots of proxies pb busy" });
    expect(t.ask(ask("k3", { proxies: ["px"] }), T0)).toMatchObject({ status: "queued", reason: "none of proxies px online" });
  });

  it("gives a draining mover no new tasks but keeps its running ones", () => {
    const { t } = table();
    t.heartbeat(hb("t1", "target", { maxTasks: 4 }), T0);
    t.heartbeat(hb("p1", "source"), T0);
    assigned(t.ask(ask("k1"), T0));
    t.heartbeat(hb("p1", "source", { state: "draining", activeTasks: ["k1"] }), T0 + 1);
    expect(t.ask(ask("k2"), T0 + 1)).toMatchObject({ status: "queued", reason: "all proxies are draining" });
    expect(t.assignment("k1")?.proxyId).toBe("p1");
  });

  it("treats a silent mover as offline: no new tasks, and its assignments are released", () => {
    const { t, events } = table({ offlineAfterMs: 10_000 });
    t.heartbeat(hb("t1", "target", { maxTasks: 4 }), T0);
    t.heartbeat(hb("p1", "source"), T0);
    t.heartbeat(hb("p2", "source"), T0);
    const a = assigned(t.ask(ask("k1"), T0));
    expect(a.proxyId).toBe("p1");
    // t1 and p2 keep beating; p1 falls silent.
    t.heartbeat(hb("t1", "target", { maxTasks: 4, activeTasks: ["k1"] }), T0 + 9_000);
    t.heartbeat(hb("p2", "source"), T0 + 9_000);
    t.tick(T0 + 10_500);
    expect(t.assignment("k1")).toBeUndefined();
    expect(events).toContainEqual(expect.objectContaining({ kind: "mover-offline", moverId: "p1" }));
    expect(events).toContainEqual(expect.objectContaining({ kind: "reclaimed", assignment: a }));
    expect(assigned(t.ask(ask("k2"), T0 + 10_500)).proxyId).toBe("p2");
    expect(t.status(T0 + 10_500).movers.find((m) => m.moverId === "p1")).toMatchObject({ online: false, usedSlots: 0 });
  });

  it("answers a repeated ask of an assigned task with the same assignment", () => {
    const { t } = table();
    t.heartbeat(hb("t1", "target"), T0);
    t.heartbeat(hb("p1", "source"), T0);
    const first = assigned(t.ask(ask("k1"), T0));
    const again = assigned(t.ask(ask("k1"), T0 + 100));
    expect(again).toEqual(first);
    expect(t.usedSlots("source", "p1")).toBe(1);
  });

  it("keeps a queued task's place when it asks again", () => {
    const { t } = table();
    for (const id of ["a", "b", "c"]) t.ask(ask(id), T0);
    expect(t.ask(ask("b"), T0 + 1_000)).toMatchObject({ status: "queued", position: 2 });
    expect(t.queueLength).toBe(3);
  });

  it("refuses the same task id from another session", () => {
    const { t } = table();
    t.ask(ask("k1"), T0);
    expect(() => t.ask(ask("k1", { sessionId: "s2" }), T0)).toThrow(expect.objectContaining({ code: ErrorCode.Conflict }));
  });

  it("drops a queued place not renewed within twice its wait time", () => {
    const { t, events } = table();
    t.ask(ask("k1", { waitMs: 1_000 }), T0);
    // Held up to 1 s, then 2 s to ask again.
    t.tick(T0 + 2_999);
    expect(t.lookup("k1")?.status).toBe("queued");
    t.tick(T0 + 3_001);
    expect(t.lookup("k1")).toBeUndefined();
    expect(events).toContainEqual(expect.objectContaining({ kind: "dropped", taskId: "k1" }));
  });

  it("gives the slot a dropped queued task held to the task behind it when the place expires", () => {
    const { t } = table();
    t.heartbeat(hb("p1", "source", { maxTasks: 1 }), T0);
    t.heartbeat(hb("t1", "target", { maxTasks: 2 }), T0);
    assigned(t.ask(ask("running"), T0));
    // The head waits for the busy proxy and holds the free r1 slot; the verify task behind it needs only that slot.
    t.ask(ask("head", { waitMs: 1_000 }), T0);
    expect(t.ask(ask("verify", { needsProxy: false }), T0)).toMatchObject({ status: "queued", position: 2 });
    t.tick(T0 + 3_001);
    expect(t.lookup("head")).toBeUndefined();
    expect(t.lookup("verify")?.status).toBe("assigned");
  });

  it("renewing a queued place moves its deadline", () => {
    const { t } = table();
    t.ask(ask("k1", { waitMs: 1_000 }), T0);
    t.ask(ask("k1", { waitMs: 1_000 }), T0 + 2_500);
    t.tick(T0 + 5_000);
    expect(t.lookup("k1")?.status).toBe("queued");
  });

  it("releases slots once and wakes the next queued task", () => {
    const { t, events } = table();
    t.heartbeat(hb("t1", "target", { maxTasks: 1 }), T0);
    t.heartbeat(hb("p1", "source"), T0);
    assigned(t.ask(ask("k1"), T0));
    t.ask(ask("k2"), T0);
    expect(t.release("k1", T0 + 1)).toBe(true);
    expect(t.release("k1", T0 + 2)).toBe(false);
    expect(t.release("never-asked", T0 + 2)).toBe(false);
    expect(events.filter((e) => e.kind === "assigned").map((e) => (e as { assignment: Assignment }).assignment.taskId)).toEqual(["k1", "k2"]);
  });

  it("takes a queued task out of the queue on release", () => {
    const { t } = table();
    t.ask(ask("k1"), T0);
    expect(t.release("k1", T0)).toBe(true);
    expect(t.lookup("k1")).toBeUndefined();
  });

  it("reclaims an assignment its movers do not report running within the grace period", () => {
    const { t, events } = table({ graceMs: 15_000 });
    t.heartbeat(hb("t1", "target"), T0);
    t.heartbeat(hb("p1", "source"), T0);
    assigned(t.ask(ask("k1"), T0));
    t.heartbeat(hb("p1", "source"), T0 + 14_000);
    expect(t.assignment("k1")).toBeDefined();
    t.heartbeat(hb("p1", "source"), T0 + 16_000);
    expect(t.assignment("k1")).toBeUndefined();
    expect(events).toContainEqual(expect.objectContaining({ kind: "reclaimed", reason: expect.stringContaining("within 15000 ms") }));
    expect(t.usedSlots("target", "t1")).toBe(0);
  });

  it("reclaims a reported task only after it is missing from two consecutive heartbeats", () => {
    const { t } = table({ graceMs: 15_000 });
    t.heartbeat(hb("t1", "target", { maxTasks: 4 }), T0);
    t.heartbeat(hb("p1", "source"), T0);
    assigned(t.ask(ask("k1"), T0));
    t.heartbeat(hb("p1", "source", { activeTasks: ["k1"] }), T0 + 2_000);
    t.heartbeat(hb("t1", "target", { maxTasks: 4, activeTasks: ["k1"] }), T0 + 2_000);
    // Missing during the grace period: tolerated.
    t.heartbeat(hb("p1", "source"), T0 + 4_000);
    t.heartbeat(hb("p1", "source"), T0 + 6_000);
    expect(t.assignment("k1")).toBeDefined();
    t.heartbeat(hb("p1", "source", { activeTasks: ["k1"] }), T0 + 16_000);
    t.heartbeat(hb("p1", "source"), T0 + 18_000);
    expect(t.assignment("k1")).toBeDefined();
    t.heartbeat(hb("p1", "source", { activeTasks: ["k1"] }), T0 + 20_000);
    t.heartbeat(hb("p1", "source"), T0 + 22_000);
    expect(t.assignment("k1")).toBeDefined();
    t.heartbeat(hb("p1", "source"), T0 + 24_000);
    expect(t.assignment("k1")).toBeUndefined();
  });

  it("counts tasks a mover reports but the scheduler does not know as used slots", () => {
    const { t } = table();
    // As after a scheduler restart: the mover still runs two tasks.
    t.heartbeat(hb("t1", "target", { maxTasks: 4 }), T0);
    t.heartbeat(hb("p1", "source", { maxTasks: 2, activeTasks: ["old1", "old2"] }), T0);
    expect(t.ask(ask("k1"), T0)).toMatchObject({ status: "queued", reason: "all 2 proxy slots busy" });
    t.heartbeat(hb("p1", "source", { maxTasks: 2, activeTasks: ["old1"] }), T0 + 2_000);
    expect(t.lookup("k1")?.status).toBe("assigned");
  });

  it("does not let a stale heartbeat listing a released task hold its slot", () => {
    const { t } = table();
    t.heartbeat(hb("t1", "target", { maxTasks: 4 }), T0);
    t.heartbeat(hb("p1", "source", { maxTasks: 1 }), T0);
    assigned(t.ask(ask("k1"), T0));
    t.heartbeat(hb("p1", "source", { maxTasks: 1, activeTasks: ["k1"] }), T0 + 1_000);
    t.ask(ask("k2"), T0 + 1_000);
    t.release("k1", T0 + 1_500);
    expect(t.lookup("k2")?.status).toBe("assigned");
  });

  it("reports movers, assignments and the queue in status", () => {
    const { t } = table();
    t.heartbeat(hb("t1", "target", { maxTasks: 1 }), T0);
    t.heartbeat(hb("p1", "source", { maxTasks: 3 }), T0);
    t.ask(ask("k1"), T0);
    t.ask(ask("k2", { priority: 70 }), T0 + 5);
    const s = t.status(T0 + 10);
    expect(s.movers).toEqual([
      expect.objectContaining({ moverId: "p1", role: "source", usedSlots: 1, maxTasks: 3, online: true }),
      expect.objectContaining({ moverId: "t1", role: "target", repositoryId: "r1", usedSlots: 1, maxTasks: 1, online: true }),
    ]);
    expect(s.assignments.map((a) => a.taskId)).toEqual(["k1"]);
    expect(s.queue).toEqual([{ taskId: "k2", sessionId: "s1", priority: 70, since: T0 + 5 }]);
  });
});

// --- property: a slot is never double-booked ---

const MOVERS = [
  { id: "p1", role: "source", maxTasks: 1 },
  { id: "p2", role: "source", maxTasks: 2 },
  { id: "p3", role: "source", maxTasks: 3 },
  { id: "t1", role: "target", maxTasks: 1, repositoryId: "r1" },
  { id: "t2", role: "target", maxTasks: 2, repositoryId: "r1" },
  { id: "t3", role: "target", maxTasks: 2, repositoryId: "r2" },
] as const;
const TASKS = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"];

const op = fc.oneof(
  { weight: 3, arbitrary: fc.record({
    kind: fc.constant("heartbeat" as const),
    mover: fc.integer({ min: 0, max: MOVERS.length - 1 }),
    draining: fc.boolean(),
    reportMask: fc.integer({ min: 0, max: 1023 }),
  }) },
  { weight: 4, arbitrary: fc.record({
    kind: fc.constant("ask" as const),
    task: fc.integer({ min: 0, max: TASKS.length - 1 }),
    repository: fc.constantFrom("r1", "r2", "r3"),
    needsProxy: fc.boolean(),
    proxies: fc.subarray(["p1", "p2", "p3"]),
    priority: fc.integer({ min: 0, max: 3 }),
  }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("release" as const), task: fc.integer({ min: 0, max: TASKS.length - 1 }) }) },
  // Mostly short steps; sometimes long enough for a mover to go offline or a grace to end.
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("tick" as const), advanceMs: fc.oneof(fc.integer({ min: 0, max: 2_500 }), fc.integer({ min: 0, max: 16_000 })) }) },
);

describe("scheduler slot table (property)", () => {
  it("never books a mover beyond its slots, never assigns a task twice, and never leaves the head waiting on free slots", () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 10, maxLength: 120 }), (ops) => {
        let now = T0;
        const overbooked: string[] = [];
        const t: SlotTable = new SlotTable({ graceMs: 15_000, offlineAfterMs: 10_000 }, (e) => {
          // Checked at the moment of booking, with the new task counted.
          if (e.kind !== "assigned") return;
          for (const m of MOVERS) {
            const mine = m.role === "source" ? e.assignment.proxyId : e.assignment.targetMoverId;
            if (mine === m.id && t.usedSlots(m.role, m.id) > m.maxTasks) overbooked.push(`${m.id} by ${e.assignment.taskId}`);
          }
        });
        const asked = new Map<string, { needsProxy: boolean; proxies: string[]; repositoryId: string }>();
        const draining = new Set<string>();
        for (const o of ops) {
          if (o.kind === "heartbeat") {
            const m = MOVERS[o.mover]!;
            // A mover reports a subset of the tasks assigned to it.
            const mine = t
              .status(now)
              .assignments.filter((a) => a.proxyId === m.id || a.targetMoverId === m.id)
              .map((a) => a.taskId)
              .filter((id) => (o.reportMask >> TASKS.indexOf(id)) & 1);
            if (o.draining) draining.add(m.id);
            else draining.delete(m.id);
            t.heartbeat(hb(m.id, m.role, { maxTasks: m.maxTasks, activeTasks: mine, state: o.draining ? "draining" : "serving", ...("repositoryId" in m ? { repositoryId: m.repositoryId } : {}) }), now);
          } else if (o.kind === "ask") {
            const taskId = TASKS[o.task]!;
            const known = asked.get(taskId);
            const req = known && t.lookup(taskId) ? { ...known } : { needsProxy: o.needsProxy, proxies: o.proxies, repositoryId: o.repository };
            asked.set(taskId, req);
            t.ask(ask(taskId, { ...req, priority: o.priority, waitMs: 5_000 }), now);
          } else if (o.kind === "release") {
            t.release(TASKS[o.task]!, now);
          } else {
            now += o.advanceMs;
            t.tick(now);
          }

          const s = t.status(now);
          // Never more tasks on a mover than it has slots, counting the tasks it still reports
          // running after their release.
          for (const m of MOVERS) {
            const onIt = s.assignments.filter((a) => (m.role === "source" ? a.proxyId : a.targetMoverId) === m.id).length;
            const used = t.usedSlots(m.role, m.id);
            expect(used).toBeGreaterThanOrEqual(onIt);
            expect(used).toBeLessThanOrEqual(m.maxTasks);
          }
          // A task is assigned at most once and never both assigned and queued.
          const ids = s.assignments.map((a) => a.taskId);
          expect(new Set(ids).size).toBe(ids.length);
          for (const q of s.queue) expect(ids).not.toContain(q.taskId);
          // Every assignment fits its request.
          for (const a of s.assignments) {
            const req = asked.get(a.taskId)!;
            expect(a.repositoryId).toBe(req.repositoryId);
            expect(MOVERS.find((m) => m.id === a.targetMoverId && m.role === "target")).toMatchObject({ repositoryId: req.repositoryId });
            expect(a.proxyId !== undefined).toBe(req.needsProxy);
            if (req.needsProxy && req.proxies.length > 0) expect(req.proxies).toContain(a.proxyId);
          }
          // The head never waits while every resource it needs has a free slot on a usable mover.
          const head = s.queue[0];
          if (head) {
            const req = asked.get(head.taskId)!;
            const usable = (id: string) => {
              const mv = s.movers.find((x) => x.moverId === id);
              return mv !== undefined && mv.online && mv.state === "serving" && mv.usedSlots < mv.maxTasks;
            };
            const targetFree = MOVERS.some((m) => m.role === "target" && m.repositoryId === req.repositoryId && usable(m.id));
            const proxyFree =
              !req.needsProxy || MOVERS.some((m) => m.role === "source" && (req.proxies.length === 0 || req.proxies.includes(m.id)) && usable(m.id));
            expect(targetFree && proxyFree).toBe(false);
          }
        }
        expect(overbooked).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });
});
