import type { NatsConnection } from "@nats-io/nats-core";
import { expect } from "vitest";
import { ErrorCode, PROTOCOL_VERSION, decodeReply, packValue, type MessageDef, type Msg } from "../../protocol/mod.js";

/** 0xc1 is never a valid msgpack start byte. */
const GARBAGE = Buffer.from([0xc1, 0x00, 0xff, 0x13]);

export interface MalformedProbe<Res extends MessageDef> {
  subject: string;
  request: MessageDef;
  response: Res;
  /** A body the endpoint serves. */
  valid: object;
  /** A body that breaks the request's schema; left out when every body fits it. */
  invalid?: object;
  /** Another message type: sent with the valid body, so only its type is wrong. */
  other: MessageDef;
}

/**
 * Invariant 7 for one endpoint: garbage, the valid body under another message type, under
 * version 99 and (when given) a schema violation each get a non-retryable error reply of their
 * code; then the valid body is still served. Returns that last reply, decoded (an error reply
 * throws, failing the test).
 */
export async function expectMalformedRefused<Res extends MessageDef>(nc: NatsConnection, probe: MalformedProbe<Res>): Promise<Msg<Res>> {
  const message = (body: object, v: number, type: string) => packValue({ ...body, v, type });
  const payloads: Array<[string, Uint8Array, ErrorCode]> = [
    ["garbage bytes", GARBAGE, ErrorCode.BadRequest],
    ["a wrong message type", message(probe.valid, PROTOCOL_VERSION, probe.other.type), ErrorCode.BadRequest],
    ["version 99", message(probe.valid, 99, probe.request.type), ErrorCode.UnsupportedVersion],
  ];
  if (probe.invalid) payloads.push(["a schema violation", message(probe.invalid, PROTOCOL_VERSION, probe.request.type), ErrorCode.BadRequest]);
  for (const [label, payload, code] of payloads) {
    const reply = await nc.request(probe.subject, payload, { timeout: 5_000 });
    let thrown: unknown;
    try {
      decodeReply(probe.response, reply.data);
    } catch (err) {
      thrown = err;
    }
    expect(thrown, label).toMatchObject({ code, retryable: false });
  }
  const ok = await nc.request(probe.subject, message(probe.valid, PROTOCOL_VERSION, probe.request.type), { timeout: 5_000 });
  return decodeReply(probe.response, ok.data);
}
