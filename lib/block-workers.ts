import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { ErrorCode, FerryError, type BlockCodec } from "../protocol/mod.js";

export type WorkerRequest =
  | { op: "attach"; arena: number; memory: SharedArrayBuffer }
  | { op: "detach"; arena: number }
  | { id: number; op: "encode"; arena: number; slotOffset: number; length: number; codec: BlockCodec }
  | {
      id: number;
      op: "decode";
      arena: number;
      slotOffset: number;
      storedLength: number;
      block: number;
      codec: BlockCodec;
      rawLength: number;
      digest: string;
      sum: string;
      /** Write the verified raw block here (positional), when given. */
      fd?: number;
      position?: number;
    };

export type WorkerReply =
  | { id: number; op: "encode"; zero: true; error?: undefined }
  | { id: number; op: "encode"; zero: false; digest: Uint8Array; codec: BlockCodec; sum: string; storedLength: number; compressed?: Uint8Array; error?: undefined }
  | { id: number; op: "decode"; error?: undefined }
  | { id: number; op: "encode" | "decode"; error: { code: string; message: string } };

type Job = Extract<WorkerRequest, { id: number }>;
type JobWithoutId = Job extends infer R ? (R extends unknown ? Omit<R, "id"> : never) : never;

export interface EncodedBlock {
  zero: boolean;
  digest?: Uint8Array;
  codec?: BlockCodec;
  sum?: string;
  /** The stored bytes: the compressed copy, or the raw block in its slot. */
  stored?: Uint8Array;
}

export interface DecodeSpec {
  block: number;
  storedLength: number;
  codec: BlockCodec;
  rawLength: number;
  digest: string;
  sum: string;
}

/**
 * A few worker threads that do the per-block CPU work (lib/block-worker.ts) for every task of a
 * process. Each task brings its own slot arena: shared memory holding its blocks in flight.
 */
export class BlockWorkers {
  private readonly workers: Worker[];
  private readonly busy: number[];
  private readonly dead: boolean[];
  private readonly pending = new Map<number, { resolve: (r: WorkerReply) => void; reject: (e: unknown) => void; worker: number }>();
  private nextId = 1;
  private nextArena = 1;
  private closed = false;

  constructor(opts: { threads?: number } = {}) {
    const threads = opts.threads ?? (Number(process.env.FERRY_BLOCK_THREADS) || Math.max(1, Math.min(2, availableParallelism())));
    // Built code runs block-worker.js; tests run the TypeScript sources, whose worker needs tsx.
    const fromSource = import.meta.url.endsWith(".ts");
    const url = new URL(fromSource ? "./block-worker.ts" : "./block-worker.js", import.meta.url);
    this.workers = Array.from({ length: threads }, (_, index) => {
      const worker = fromSource
        ? new Worker(`import("tsx/esm/api").then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); })`, { eval: true })
        : new Worker(url);
      worker.on("message", (reply: WorkerReply) => this.onReply(index, reply));
      worker.on("error", (err) => this.failWorker(index, err));
      worker.on("exit", (code) => this.failWorker(index, new Error(`exited with code ${code}`)));
      worker.unref();
      return worker;
    });
    this.dead = this.workers.map(() => false);
    this.busy = this.workers.map(() => 0);
  }

  /** Shared memory for `slots` blocks of up to `slotBytes`, known to every worker. */
  createArena(slotBytes: number, slots: number): SlotArena {
    const arena = this.nextArena++;
    const memory = new SharedArrayBuffer(slotBytes * slots);
    for (const worker of this.workers) worker.postMessage({ op: "attach", arena, memory } satisfies WorkerRequest);
    return new SlotArena(this, arena, memory, slotBytes, slots);
  }

  /** @internal */
  detach(arena: number): void {
    if (this.closed) return;
    for (const worker of this.workers) worker.postMessage({ op: "detach", arena } satisfies WorkerRequest);
  }

  private onReply(worker: number, reply: WorkerReply): void {
    const pending = this.pending.get(reply.id);
    if (!pending) return;
    this.pending.delete(reply.id);
    // An idle worker must not keep the process alive; a busy one must, until its reply arrives.
    if (--this.busy[worker]! === 0) this.workers[worker]!.unref();
    if (reply.error) pending.reject(new FerryError(reply.error.code as ErrorCode, reply.error.message));
    else pending.resolve(reply);
  }

  private failWorker(worker: number, err: Error): void {
    this.dead[worker] = true;
    for (const [id, pending] of this.pending) {
      if (pending.worker === worker) {
        this.pending.delete(id);
        pending.reject(new FerryError(ErrorCode.Internal, `block worker failed: ${err.message}`));
      }
    }
  }

  /** @internal Runs a job on the least busy worker. */
  run(job: JobWithoutId): Promise<WorkerReply> {
    if (this.closed) return Promise.reject(new FerryError(ErrorCode.Unavailable, "block workers are closed"));
    let worker = -1;
    for (let i = 0; i < this.workers.length; i++) {
      if (!this.dead[i] && (worker < 0 || this.busy[i]! < this.busy[worker]!)) worker = i;
    }
    if (worker < 0) return Promise.reject(new FerryError(ErrorCode.Internal, "every block worker has died"));
    const id = this.nextId++;
    if (this.busy[worker]!++ === 0) this.workers[worker]!.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker });
      this.workers[worker]!.postMessage({ ...job, id });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** One task's blocks in flight: a fixed number of slots, so the task's memory is bounded. */
export class SlotArena {
  private readonly free: number[] = [];
  private readonly waiters: Array<(slot: number) => void> = [];

  constructor(
    private readonly workers: BlockWorkers,
    private readonly arena: number,
    private readonly memory: SharedArrayBuffer,
    readonly slotBytes: number,
    readonly slots: number,
  ) {
    for (let i = slots - 1; i >= 0; i--) this.free.push(i);
  }

  /** A view of a slot's memory, to read a block into it or copy a received one. */
  view(slot: number, length = this.slotBytes): Buffer {
    return Buffer.from(this.memory, slot * this.slotBytes, length);
  }

  acquire(): Promise<number> | number {
    const slot = this.free.pop();
    if (slot !== undefined) return slot;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(slot: number): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(slot);
    else this.free.push(slot);
  }

  /** Zero check, digest, compression and checksum of the block in `slot`. */
  async encode(slot: number, length: number, codec: BlockCodec): Promise<EncodedBlock> {
    const reply = await this.workers.run({ op: "encode", arena: this.arena, slotOffset: slot * this.slotBytes, length, codec });
    if (reply.op !== "encode" || reply.error) throw new FerryError(ErrorCode.Internal, "unexpected block worker reply");
    if (reply.zero) return { zero: true };
    return { zero: false, digest: reply.digest, codec: reply.codec, sum: reply.sum, stored: reply.compressed ?? this.view(slot, length) };
  }

  /** Checks the checksum, decompresses, verifies the digest of and (with `write`) writes the stored block in `slot`. */
  async decode(slot: number, spec: DecodeSpec, write?: { fd: number; position: number }): Promise<void> {
    await this.workers.run({ op: "decode", arena: this.arena, slotOffset: slot * this.slotBytes, ...spec, ...(write ?? {}) });
  }

  close(): void {
    this.workers.detach(this.arena);
  }
}
