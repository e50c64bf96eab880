import { randomBytes } from "node:crypto";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChannelReceiver, ChannelSender, type ReceiverHandlers } from "../../lib/datachannel.js";
import { payloadSum } from "../../lib/block-codec.js";
import { connectNats } from "../../lib/nats.js";
import { FerryError, FrameHeader, dataSubjects, emptyTaskStats, type BlockFrameMeta } from "../../protocol/mod.js";
import { startTestNats } from "../harness/nats.js";

const block = (i: number, size: number) => {
  const stored = randomBytes(size);
  return { block: i, digest: "ab".repeat(32), codec: "none" as const, rawLen: size, sum: payloadSum(stored), stored };
};

const endBody = (blocks: number) => ({ blocks, totalBlocks: blocks, sizeBytes: 0, stats: emptyTaskStats() });

describe("data channel", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let sendNc: NatsConnection;
  let recvNc: NatsConnection;

  beforeAll(async () => {
    nats = await startTestNats({ maxPayloadBytes: 64 * 1024 });
    sendNc = await connectNats({ servers: nats.url, name: "sender" });
    recvNc = await connectNats({ servers: nats.url, name: "receiver" });
  });
  afterAll(async () => {
    await sendNc?.close();
    await recvNc?.close();
    await nats?.stop();
  });

  // In Ferry the offer reaches the sender through the receiver's connection after its SUB, so the
  // subscription is in place first; between two test connections a flush gives the same order.
  async function receiver(handlers: Partial<ReceiverHandlers>, opts: { window?: number; concurrency?: number; idleTimeoutMs?: number } = {}) {
    const r = new ChannelReceiver(recvNc, {
      onBlock: handlers.onBlock ?? (async () => undefined),
      onEnd: handlers.onEnd ?? (async () => ({ stats: emptyTaskStats(), outcome: { kind: "restore", path: "/x", sizeBytes: 0 } })),
    }, opts);
    r.start();
    await recvNc.flush();
    return r;
  }

  it("splits blocks larger than a frame into parts and reassembles them in order", async () => {
    const got: Array<{ meta: BlockFrameMeta; data: Buffer }> = [];
    const r = await receiver({ onBlock: async (meta, parts) => void got.push({ meta, data: Buffer.concat(parts) }) });
    const sender = new ChannelSender(sendNc, r.offer());
    const blocks = [block(0, 200_000), block(1, 10), block(2, 64 * 1024)];
    for (const b of blocks) await sender.sendBlock(b);
    const sealed = await sender.end(endBody(3));
    expect(sealed.outcome.kind).toBe("restore");
    await r.done;
    expect(got.map((g) => g.meta.block)).toEqual([0, 1, 2]);
    expect(got[0]!.meta.parts).toBe(Math.ceil(200_000 / r.maxFrameBytes));
    got.forEach((g, i) => expect(g.data.equals(blocks[i]!.stored)).toBe(true));
  });

  it("completes a block split into more parts than the window", async () => {
    const got: Buffer[] = [];
    const r = await receiver({ onBlock: async (_meta, parts) => void got.push(Buffer.concat(parts)) }, { window: 2 });
    const sender = new ChannelSender(sendNc, r.offer());
    const big = block(0, r.maxFrameBytes * 5 + 17); // 6 parts, window 2
    await sender.sendBlock(big);
    await sender.end(endBody(1));
    expect(got).toHaveLength(1);
    expect(got[0]!.equals(big.stored)).toBe(true);
  });

  it("never lets the sender have more frames in flight than the window", async () => {
    let inFlight = 0;
    let peak = 0;
    let received = 0;
    const window = 4;
    const sub = recvNc.subscribe("ferry.data.>"); // counts frames as they arrive, before the receiver processes them
    const r = await receiver(
      {
        onBlock: async () => {
          await new Promise((res) => setTimeout(res, 5));
          received++;
          inFlight--;
        },
      },
      { window, concurrency: 1 },
    );
    void (async () => {
      for await (const m of sub) {
        if (m.subject === dataSubjects.forward(r.channelId) && m.headers?.get(FrameHeader.Kind) === "block") {
          inFlight++;
          peak = Math.max(peak, inFlight);
        }
      }
    })();
    const sender = new ChannelSender(sendNc, r.offer());
    for (let i = 0; i < 40; i++) await sender.sendBlock(block(i, 1000));
    await sender.end(endBody(40));
    sub.unsubscribe();
    expect(received).toBe(40);
    expect(peak).toBeLessThanOrEqual(window);
    expect(peak).toBeGreaterThan(1);
  });

  it("fails the channel on a lost frame and tells the sender", async () => {
    const r = await receiver({});
    const h = natsHeaders();
    h.set(FrameHeader.Kind, "block");
    h.set(FrameHeader.Seq, "2"); // frame 1 never arrives
    sendNc.publish(dataSubjects.forward(r.channelId), Buffer.from("x"), { headers: h });
    await expect(r.done).rejects.toMatchObject({ code: "corrupt", message: expect.stringMatching(/frame 1 lost/) });
  });

  it("rejects a block whose payload is shorter than its header says, and tells the sender", async () => {
    const r = await receiver({});
    const sender = new ChannelSender(sendNc, r.offer());
    await sender.sendBlock(block(0, 1000));
    // A forged frame on the same channel: its header promises 20 bytes, it carries 10.
    const h = natsHeaders();
    const fields = { Kind: "block", Seq: "2", Block: "1", Part: "0", Parts: "1", Digest: "ab".repeat(32), Codec: "none", RawLen: "10", StoredLen: "20", Sum: "0".repeat(16) };
    for (const [k, v] of Object.entries(fields)) h.set(FrameHeader[k as keyof typeof FrameHeader], v);
    sendNc.publish(dataSubjects.forward(r.channelId), Buffer.alloc(10), { headers: h });
    await expect(r.done).rejects.toMatchObject({ code: "corrupt", message: expect.stringMatching(/is 10 bytes, header says 20/) });
    await expect(sender.end(endBody(1))).rejects.toMatchObject({ code: "corrupt" });
  });

  it("passes a receiver failure back to the sender", async () => {
    const r = await receiver({ onBlock: async () => { throw new FerryError("io", "disk full"); } });
    const sender = new ChannelSender(sendNc, r.offer());
    await sender.sendBlock(block(0, 100));
    await expect(sender.end(endBody(1))).rejects.toMatchObject({ code: "io", message: "disk full" });
  });

  it("passes a sender abort to the receiver", async () => {
    const r = await receiver({});
    const sender = new ChannelSender(sendNc, r.offer());
    sender.abort(new FerryError("not_found", "disk vanished"));
    await expect(r.done).rejects.toMatchObject({ code: "not_found", message: expect.stringMatching(/disk vanished/) });
  });

  it("times out a sender that gets no credit from a silent receiver", async () => {
    const sender = new ChannelSender(sendNc, { channelId: "nobodyListensHere0001", window: 1, maxFrameBytes: 4096 }, { creditTimeoutMs: 200 });
    await sender.sendBlock(block(0, 10));
    await expect(sender.sendBlock(block(1, 10))).rejects.toMatchObject({ code: "timeout" });
  });

  it("times out a receiver whose sender went silent", async () => {
    const r = await receiver({}, { idleTimeoutMs: 200 });
    await expect(r.done).rejects.toMatchObject({ code: "timeout", message: expect.stringMatching(/sender silent/) });
  });
});
