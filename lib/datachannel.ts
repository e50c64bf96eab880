import { headers as natsHeaders, type Msg as NatsMsg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import {
  DataAbort,
  DataCredit,
  DataEnd,
  DataError,
  DataSealed,
  ErrorCode,
  FRAME_HEADER_ROOM,
  FerryError,
  FrameHeader,
  FrameKind,
  dataSubjects,
  decode,
  encode,
  readBlockFrameMeta,
  readFrameKind,
  readFrameSeq,
  unpackValue,
  validate,
  writeBlockFrameHeaders,
  type BlockCodec,
  type BlockFrameMeta,
  type BodyIn,
  type ChannelOffer,
  type Msg,
} from "../protocol/mod.js";
import { randomToken } from "./ids.js";
import { maxPayload } from "./nats.js";

/**
 * One task's data channel over core NATS (protocol/datachannel.ts): frames forward, credits and
 * the seal backward. The receiver opens it and grants credits; the sender never has more frames
 * in flight than it holds credit for, so memory on both sides stays bounded and nothing is dropped.
 */

export const DEFAULT_WINDOW_FRAMES = 32;

/** Frame payload size for a connection: max_payload less room for the headers. */
export function frameBytesFor(nc: NatsConnection): number {
  return maxPayload(nc) - FRAME_HEADER_ROOM;
}

export interface BlockToSend {
  block: number;
  digest: string;
  codec: BlockCodec;
  rawLen: number;
  sum: string;
  stored: Uint8Array;
}

export type Sealed = Omit<Msg<typeof DataSealed>, "v" | "type">;

export class ChannelSender {
  private credits: number;
  private seq = 0;
  private waiting?: { resolve: () => void; reject: (err: unknown) => void; timer: NodeJS.Timeout };
  private readonly reverse: Subscription;
  private readonly frameBytes: number;
  private failure?: FerryError;
  private sealedWaiter?: { resolve: (s: Sealed) => void; reject: (err: unknown) => void };
  private sealedResult?: Sealed;
  private readonly forwardSubject: string;

  constructor(
    private readonly nc: NatsConnection,
    readonly channel: ChannelOffer,
    private readonly opts: { creditTimeoutMs?: number; sealTimeoutMs?: number } = {},
  ) {
    this.credits = channel.window;
    this.frameBytes = Math.min(channel.maxFrameBytes, frameBytesFor(nc));
    this.forwardSubject = dataSubjects.forward(channel.channelId);
    this.reverse = nc.subscribe(dataSubjects.reverse(channel.channelId), { callback: (err, msg) => this.onReverse(err, msg) });
  }

  get framesSent(): number {
    return this.seq;
  }

  private onReverse(err: Error | null, msg: NatsMsg): void {
    if (err) return this.fail(FerryError.from(err, ErrorCode.Unavailable));
    try {
      const raw = unpackValue(msg.data) as { type?: unknown };
      switch (raw?.type) {
        case DataCredit.type: {
          const credit = validate(DataCredit, raw);
          this.credits += credit.grant;
          this.wake();
          return;
        }
        case DataSealed.type: {
          this.sealedResult = validate(DataSealed, raw);
          this.sealedWaiter?.resolve(this.sealedResult);
          return;
        }
        case DataError.type:
          return this.fail(FerryError.fromWire(validate(DataError, raw).error));
        default:
          throw new FerryError(ErrorCode.BadRequest, `unexpected message on data channel: ${String(raw?.type)}`);
      }
    } catch (e) {
      this.fail(FerryError.from(e, ErrorCode.BadRequest));
    }
  }

  private wake(): void {
    const waiting = this.waiting;
    if (waiting && this.credits > 0) {
      this.waiting = undefined;
      clearTimeout(waiting.timer);
      waiting.resolve();
    }
  }

  private fail(error: FerryError): void {
    if (this.failure) return;
    this.failure = error;
    if (this.waiting) {
      clearTimeout(this.waiting.timer);
      this.waiting.reject(error);
      this.waiting = undefined;
    }
    this.sealedWaiter?.reject(error);
  }

  private takeCredit(): Promise<void> | void {
    if (this.failure) throw this.failure;
    if (this.credits > 0) {
      this.credits--;
      return;
    }
    const timeoutMs = this.opts.creditTimeoutMs ?? 60_000;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        this.fail(new FerryError(ErrorCode.Timeout, `receiver granted no credit for ${timeoutMs} ms (${this.seq} frames sent)`));
        reject(this.failure);
      }, timeoutMs);
      this.waiting = { resolve, reject, timer };
    }).then(() => {
      this.credits--;
    });
  }

  /**
   * Sends one block, split into frames of at most the frame size. The stored bytes are handed to
   * the NATS client, which copies them when it flushes (within this tick's microtasks).
   */
  async sendBlock(block: BlockToSend): Promise<void> {
    const storedLen = block.stored.length;
    const parts = Math.max(1, Math.ceil(storedLen / this.frameBytes));
    for (let part = 0; part < parts; part++) {
      const credit = this.takeCredit();
      if (credit) await credit;
      const meta: BlockFrameMeta = {
        seq: ++this.seq,
        block: block.block,
        part,
        parts,
        digest: block.digest,
        codec: block.codec,
        rawLen: block.rawLen,
        storedLen,
        sum: block.sum,
      };
      const h = natsHeaders();
      writeBlockFrameHeaders(h, meta);
      const from = part * this.frameBytes;
      this.nc.publish(this.forwardSubject, block.stored.subarray(from, Math.min(storedLen, from + this.frameBytes)), { headers: h });
    }
  }

  /** Sends the end frame and waits for the receiver's seal (everything durable) or error. */
  async end(body: Omit<BodyIn<typeof DataEnd>, "frames">): Promise<Sealed> {
    if (this.failure) throw this.failure;
    const h = natsHeaders();
    h.set(FrameHeader.Kind, FrameKind.End);
    h.set(FrameHeader.Seq, String(++this.seq));
    const sealed = new Promise<Sealed>((resolve, reject) => {
      if (this.sealedResult) return resolve(this.sealedResult);
      const timeoutMs = this.opts.sealTimeoutMs ?? 300_000;
      const timer = setTimeout(() => reject(new FerryError(ErrorCode.Timeout, `receiver did not seal within ${timeoutMs} ms`)), timeoutMs);
      this.sealedWaiter = {
        resolve: (s) => (clearTimeout(timer), resolve(s)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
    });
    this.nc.publish(this.forwardSubject, encode(DataEnd, { ...body, frames: this.seq }), { headers: h });
    try {
      return await sealed;
    } finally {
      this.close();
    }
  }

  /** Tells the receiver the task failed on this side; it discards what it got. */
  abort(error: FerryError): void {
    if (!this.failure) {
      const h = natsHeaders();
      h.set(FrameHeader.Kind, FrameKind.Abort);
      h.set(FrameHeader.Seq, String(++this.seq));
      this.nc.publish(this.forwardSubject, encode(DataAbort, { error: error.toWire() }), { headers: h });
    }
    this.fail(error);
    this.close();
  }

  close(): void {
    if (!this.reverse.isClosed()) this.reverse.unsubscribe();
  }
}

export interface ReceiverHandlers {
  /** Processes one whole block (its frames' payloads in order). May run `concurrency` at once. */
  onBlock: (meta: BlockFrameMeta, parts: Uint8Array[]) => Promise<void>;
  /** All blocks are processed: make everything durable and say what the task produced. */
  onEnd: (end: Msg<typeof DataEnd>) => Promise<Sealed>;
}

interface PendingBlock {
  meta: BlockFrameMeta;
  parts: Uint8Array[];
  received: number;
}

export class ChannelReceiver {
  readonly channelId = randomToken(22);
  readonly window: number;
  readonly maxFrameBytes: number;
  private readonly concurrency: number;
  private readonly idleTimeoutMs: number;
  private sub?: Subscription;
  private lastSeq = 0;
  private granted: number;
  private ungranted = 0;
  private assembling?: PendingBlock;
  private readonly queue: PendingBlock[] = [];
  private running = 0;
  private endFrame?: Msg<typeof DataEnd>;
  private idleTimer?: NodeJS.Timeout;
  private finished = false;
  private settle!: { resolve: (s: Sealed) => void; reject: (e: FerryError) => void };
  /** Resolves with the seal once sent; rejects when the channel fails or the sender aborts. */
  readonly done: Promise<Sealed>;

  constructor(
    private readonly nc: NatsConnection,
    private readonly handlers: ReceiverHandlers,
    opts: { window?: number; concurrency?: number; idleTimeoutMs?: number } = {},
  ) {
    this.window = opts.window ?? DEFAULT_WINDOW_FRAMES;
    this.granted = this.window;
    this.maxFrameBytes = frameBytesFor(nc);
    this.concurrency = opts.concurrency ?? 4;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.done = new Promise<Sealed>((resolve, reject) => (this.settle = { resolve, reject }));
    this.done.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection
  }

  offer(): ChannelOffer {
    return { channelId: this.channelId, window: this.window, maxFrameBytes: this.maxFrameBytes };
  }

  /** Subscribes; call before handing the offer to the sender. */
  start(): void {
    this.sub = this.nc.subscribe(dataSubjects.forward(this.channelId), { callback: (err, msg) => this.onFrame(err, msg) });
    this.armIdleTimer();
  }

  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      const state = `${this.lastSeq} frames received, ${this.running} blocks in progress, ${this.queue.length} queued, ${this.ungranted} credits not yet granted`;
      this.fail(new FerryError(ErrorCode.Timeout, `sender silent for ${this.idleTimeoutMs} ms (${state})`));
    }, this.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private onFrame(err: Error | null, msg: NatsMsg): void {
    if (this.finished) return;
    if (err) return this.fail(FerryError.from(err, ErrorCode.Unavailable));
    try {
      this.armIdleTimer();
      const kind = readFrameKind(msg.headers);
      const seq = readFrameSeq(msg.headers!);
      if (seq !== this.lastSeq + 1) {
        throw new FerryError(ErrorCode.Corrupt, `frame ${this.lastSeq + 1} lost (got ${seq})`);
      }
      this.lastSeq = seq;
      if (kind === FrameKind.Block) return this.onBlockFrame(readBlockFrameMeta(msg.headers!), msg.data);
      if (kind === FrameKind.Abort) {
        const abort = decode(DataAbort, msg.data);
        return this.fail(new FerryError(abort.error.code, `sender aborted: ${abort.error.message}`, { retryable: abort.error.retryable }), false);
      }
      const end = decode(DataEnd, msg.data);
      if (end.frames !== seq) throw new FerryError(ErrorCode.Corrupt, `end frame says ${end.frames} frames, got ${seq}`);
      if (this.assembling) throw new FerryError(ErrorCode.Corrupt, `end frame in the middle of block ${this.assembling.meta.block}`);
      this.endFrame = end;
      this.pump();
    } catch (e) {
      this.fail(FerryError.from(e, ErrorCode.BadRequest));
    }
  }

  private onBlockFrame(meta: BlockFrameMeta, payload: Uint8Array): void {
    if (meta.seq > this.granted) throw new FerryError(ErrorCode.BadRequest, `frame ${meta.seq} sent without credit`);
    if (payload.length > this.maxFrameBytes) throw new FerryError(ErrorCode.BadRequest, `frame of ${payload.length} bytes exceeds ${this.maxFrameBytes}`);
    let pending = this.assembling;
    if (meta.part === 0) {
      if (pending) throw new FerryError(ErrorCode.Corrupt, `block ${pending.meta.block} incomplete before block ${meta.block}`);
      pending = { meta, parts: [], received: 0 };
      this.assembling = pending;
    } else if (!pending || pending.meta.block !== meta.block || meta.part !== pending.parts.length || pending.meta.digest !== meta.digest) {
      throw new FerryError(ErrorCode.Corrupt, `unexpected part ${meta.part} of block ${meta.block}`);
    }
    pending.parts.push(payload);
    pending.received += payload.length;
    if (pending.received > meta.storedLen) throw new FerryError(ErrorCode.Corrupt, `block ${meta.block} is longer than ${meta.storedLen} bytes`);
    if (pending.parts.length === meta.parts) {
      if (pending.received !== meta.storedLen) throw new FerryError(ErrorCode.Corrupt, `block ${meta.block} is ${pending.received} bytes, header says ${meta.storedLen}`);
      this.assembling = undefined;
      this.queue.push(pending);
      this.pump();
    } else {
      // A part before the last is credited at once: a block split into more parts than the
      // window must still complete. Memory stays bounded by the window plus one block.
      this.grant(1);
    }
  }

  private pump(): void {
    while (!this.finished && this.running < this.concurrency && this.queue.length > 0) {
      const block = this.queue.shift()!;
      this.running++;
      this.handlers.onBlock(block.meta, block.parts).then(
        () => {
          this.running--;
          this.grant(1); // the block's last part; earlier parts were credited on arrival
          this.pump();
        },
        (e: unknown) => {
          this.running--;
          this.fail(FerryError.from(e, ErrorCode.Io));
        },
      );
    }
    if (!this.finished && this.endFrame && this.running === 0 && this.queue.length === 0) {
      const end = this.endFrame;
      this.endFrame = undefined;
      clearTimeout(this.idleTimer);
      this.handlers.onEnd(end).then(
        (sealed) => {
          if (this.finished) return;
          this.nc.publish(dataSubjects.reverse(this.channelId), encode(DataSealed, sealed));
          this.finish();
          this.settle.resolve(sealed);
        },
        (e: unknown) => this.fail(FerryError.from(e, ErrorCode.Io)),
      );
    }
  }

  private grant(frames: number): void {
    this.ungranted += frames;
    // Credits go back in batches: fewer control messages, the window keeps the pipe full.
    if (this.ungranted >= Math.max(1, this.window >> 2) || (this.queue.length === 0 && this.running === 0)) {
      this.granted += this.ungranted;
      this.nc.publish(dataSubjects.reverse(this.channelId), encode(DataCredit, { grant: this.ungranted, processedSeq: this.lastSeq }));
      this.ungranted = 0;
    }
  }

  /** Fails the channel: tells the sender (unless it aborted itself) and stops receiving. */
  fail(error: FerryError, tellSender = true): void {
    if (this.finished) return;
    if (tellSender) this.nc.publish(dataSubjects.reverse(this.channelId), encode(DataError, { error: error.toWire() }));
    this.finish();
    this.settle.reject(error);
  }

  private finish(): void {
    this.finished = true;
    clearTimeout(this.idleTimer);
    this.queue.length = 0;
    if (this.sub && !this.sub.isClosed()) this.sub.unsubscribe();
  }
}
