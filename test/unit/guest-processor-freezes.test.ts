import { describe, expect, it } from "vitest";
import { FreezeRegistry, type ActiveFreeze } from "../../actors/guest-processor/freezes.js";

const freeze = (freezeId: string, deadline: number): ActiveFreeze => ({ freezeId, vmId: "vm-1", sessionId: "s1", frozenAt: 0, deadline });

describe("guest processor freeze registry", () => {
  it("remembers freezes until they are forgotten", () => {
    const r = new FreezeRegistry();
    r.add(freeze("f1", 1_000));
    r.add(freeze("f2", 2_000));
    expect(r.get("f1")?.deadline).toBe(1_000);
    expect(r.forget("f1")).toBe(true);
    expect(r.forget("f1")).toBe(false);
    expect(r.active().map((f) => f.freezeId)).toEqual(["f2"]);
  });

  it("sweeps only freezes whose deadline passed more than the grace ago", () => {
    const r = new FreezeRegistry();
    r.add(freeze("early", 1_000));
    r.add(freeze("late", 5_000));
    expect(r.sweep(5_000, 5_000)).toEqual([]);
    expect(r.sweep(6_001, 5_000).map((f) => f.freezeId)).toEqual(["early"]);
    expect(r.active().map((f) => f.freezeId)).toEqual(["late"]);
  });
});
