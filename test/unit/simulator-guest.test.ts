import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { isFerryError } from "../../protocol/mod.js";
import { GuestAgent } from "../../simulators/guest/agent.js";

const log = pino({ level: "silent" });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function agent(freezeMs = 20, writes?: { count: number }) {
  return new GuestAgent(
    "vm-1",
    "windows-server-2022",
    [
      { name: "sqlserver", kind: "database", freezeMs, writeBytesPerSec: writes ? 2 * 1024 * 1024 : 0 },
      { name: "iis", kind: "web", freezeMs: 0, writeBytesPerSec: 0 },
    ],
    log,
    writes
      ? async () => {
          writes.count++;
        }
      : undefined,
  );
}

describe("guest OS simulator", () => {
  it("freezes the applications after their flush time and thaws them on request", async () => {
    const guest = agent(60);
    const started = Date.now();
    const frozen = await guest.freeze("f-1", 5_000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(55);
    expect(frozen.applications.map((a) => a.state)).toEqual(["frozen", "frozen"]);
    expect(guest.info().applications.every((a) => a.state === "frozen")).toBe(true);
    await sleep(30);
    const thawed = guest.thaw("f-1");
    expect(thawed.expired).toBe(false);
    expect(thawed.frozenMs).toBeGreaterThanOrEqual(25);
    expect(thawed.applications.map((a) => a.state)).toEqual(["running", "running"]);
    // A repeated thaw gets the same answer.
    expect(guest.thaw("f-1").expired).toBe(false);
    await guest.stop();
  });

  it("thaws itself when no thaw comes within the timeout, and a late thaw reports expired", async () => {
    const guest = agent(10);
    await guest.freeze("f-2", 150);
    expect(guest.frozen).toBe(true);
    await sleep(300);
    expect(guest.frozen).toBe(false);
    expect(guest.info().applications.every((a) => a.state === "running")).toBe(true);
    const late = guest.thaw("f-2");
    expect(late.expired).toBe(true);
    expect(late.frozenMs).toBeGreaterThanOrEqual(100);
    expect(late.frozenMs).toBeLessThan(300);
    await guest.stop();
  });

  it("fails a freeze whose application hangs past the timeout and keeps the applications running", async () => {
    const guest = agent(10_000);
    const started = Date.now();
    await expect(guest.freeze("f-3", 200)).rejects.toSatisfy((e) => isFerryError(e, "timeout"));
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(guest.info().applications.every((a) => a.state === "running")).toBe(true);
    expect(guest.thaw("f-3").expired).toBe(true);
    // The guest can be frozen again afterwards.
    await guest.stop();
  });

  it("refuses a second freeze while frozen and a thaw of an unknown freeze", async () => {
    const guest = agent(0);
    await guest.freeze("f-4", 5_000);
    await expect(guest.freeze("f-5", 5_000)).rejects.toSatisfy((e) => isFerryError(e, "conflict"));
    // A retried request for the same freeze gets the same answer.
    expect((await guest.freeze("f-4", 5_000)).freezeId).toBe("f-4");
    expect(() => guest.thaw("f-nope")).toThrow(expect.objectContaining({ code: "not_found" }));
    guest.thaw("f-4");
    expect((await guest.freeze("f-6", 5_000)).freezeId).toBe("f-6");
    await guest.stop();
  });

  it("stops application writes while frozen and resumes them on thaw", async () => {
    const writes = { count: 0 };
    const guest = agent(0, writes);
    await sleep(300);
    expect(writes.count).toBeGreaterThan(2);
    await guest.freeze("f-7", 5_000);
    const atFreeze = writes.count;
    await sleep(300);
    expect(writes.count).toBe(atFreeze);
    guest.thaw("f-7");
    await sleep(300);
    expect(writes.count).toBeGreaterThan(atFreeze);
    await guest.stop();
  });
});
