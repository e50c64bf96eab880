import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ErrorCode,
  FerryError,
  ListVmsRequest,
  SessionRecord,
  TaskProgressEvent,
  decode,
  decodeReply,
  encode,
  encodeError,
  packValue,
  sessionIdFor,
  subject,
} from "../../protocol/mod.js";

describe("message codec", () => {
  it("round-trips a message and fills defaults", () => {
    const decoded = decode(ListVmsRequest, encode(ListVmsRequest, { hypervisorId: "hv-1" }));
    expect(decoded).toMatchObject({ v: 1, type: "broker.vms.req", hypervisorId: "hv-1", selectors: [], refresh: false });
  });

  it("round-trips arbitrary task statistics", () => {
    fc.assert(
      fc.property(fc.record({ processedBytes: fc.nat(), readBytes: fc.nat(), transferredBytes: fc.nat(), blocks: fc.nat(), zeroBlocksSkipped: fc.nat() }), (stats) => {
        const body = { sessionId: "s-1", taskId: "t-1", moverId: "m-1", at: 1, stats };
        expect(decode(TaskProgressEvent, encode(TaskProgressEvent, body)).stats).toMatchObject(stats);
      }),
    );
  });

  it("rejects an unknown protocol version with unsupported_version", () => {
    const data = packValue({ v: 99, type: ListVmsRequest.type, hypervisorId: "hv-1" });
    expect(() => decode(ListVmsRequest, data)).toThrow(expect.objectContaining({ code: ErrorCode.UnsupportedVersion, retryable: false }));
  });

  it("rejects a message of another type", () => {
    const data = encode(TaskProgressEvent, { sessionId: "s", taskId: "t", moverId: "m", at: 1, stats: {} });
    expect(() => decode(ListVmsRequest, data)).toThrow(/expected message type broker.vms.req/);
  });

  it("names the offending field when the schema fails", () => {
    const data = packValue({ v: 1, type: ListVmsRequest.type, hypervisorId: "has a space" });
    expect(() => decode(ListVmsRequest, data)).toThrow(/field hypervisorId/);
  });

  it("rejects bytes that are not msgpack or not a map with bad_request", () => {
    for (const data of [Buffer.from([0xc1]), packValue("a string"), packValue([1, 2]), packValue(null)]) {
      expect(() => decode(ListVmsRequest, data)).toThrow(expect.objectContaining({ code: ErrorCode.BadRequest }));
    }
  });

  it("turns an error reply into a FerryError with its code and retryability", () => {
    const reply = encodeError({ code: ErrorCode.Unavailable, message: "all slots busy", retryable: true });
    try {
      decodeReply(ListVmsRequest, reply);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(FerryError);
      expect(err).toMatchObject({ code: "unavailable", message: "all slots busy", retryable: true });
    }
  });

  it("keeps session records readable after encode and decode", () => {
    const session = {
      id: "backup-20261126-120000-abcdef012345", kind: "backup" as const, requestId: "r1", requestedBy: "test", requestedAt: 1, owner: "m1",
      state: "running" as const, createdAt: 1, updatedAt: 1, stats: {},
    };
    expect(decode(SessionRecord, encode(SessionRecord, session))).toMatchObject({ ...session, tasks: [], vms: [], warnings: [] });
  });
});

describe("subjects and ids", () => {
  it("refuses subject tokens that could widen a subscription", () => {
    for (const bad of ["a.b", "*", ">", "", "a b"]) expect(() => subject("svc", bad)).toThrow(FerryError);
    expect(subject("svc", "broker", "vms")).toBe("ferry.svc.broker.vms");
  });

  it("derives the same session id from the same trigger and different ids from different ones", () => {
    const a = sessionIdFor("backup", "key-1", Date.UTC(2026, 10, 26, 12, 0, 0));
    expect(a).toBe(sessionIdFor("backup", "key-1", Date.UTC(2026, 10, 26, 12, 0, 0)));
    expect(a).toMatch(/^backup-20261126-120000-[0-9a-f]{12}$/);
    expect(sessionIdFor("backup", "key-2", Date.UTC(2026, 10, 26, 12, 0, 0))).not.toBe(a);
    expect(sessionIdFor("restore", "key-1", Date.UTC(2026, 10, 26, 12, 0, 0))).not.toBe(a);
  });
});
