import { randomFillSync } from "node:crypto";
import type { Logger } from "../lib/log.js";

const TICK_MS = 50;

export interface RateWriterOptions {
  bytesPerSec: number;
  ioSizeBytes: number;
  /** Performs one write of `data`; the writer keeps one write in flight at a time. */
  write: (data: Buffer) => Promise<void>;
  log: Logger;
  /** Shown in log lines. */
  name: string;
}

/**
 * Writes `ioSizeBytes` of random data at `bytesPerSec` on average: a token bucket refilled by a
 * timer, at most one write in flight, burst bounded to a quarter second of the rate. A failing
 * write is logged and the writer keeps going (it stops logging after the first few).
 */
export class RateWriter {
  private bytesPerSec: number;
  private ioSizeBytes: number;
  private tokens = 0;
  private lastRefill = performance.now();
  private timer?: NodeJS.Timeout;
  private pumping?: Promise<void>;
  private paused = false;
  private failures = 0;
  private buffer: Buffer;

  constructor(private readonly opts: RateWriterOptions) {
    this.bytesPerSec = opts.bytesPerSec;
    this.ioSizeBytes = opts.ioSizeBytes;
    this.buffer = Buffer.alloc(opts.ioSizeBytes);
    this.arm();
  }

  get rate(): { bytesPerSec: number; ioSizeBytes: number } {
    return { bytesPerSec: this.bytesPerSec, ioSizeBytes: this.ioSizeBytes };
  }

  setRate(bytesPerSec: number, ioSizeBytes = this.ioSizeBytes): void {
    this.bytesPerSec = bytesPerSec;
    if (ioSizeBytes !== this.ioSizeBytes) {
      this.ioSizeBytes = ioSizeBytes;
      this.buffer = Buffer.alloc(ioSizeBytes);
    }
    this.tokens = Math.min(this.tokens, this.burst());
    this.arm();
  }

  /** Stops writing and waits for the write in flight; `resume` continues. */
  async pause(): Promise<void> {
    this.paused = true;
    this.disarm();
    await this.pumping;
  }

  resume(): void {
    this.paused = false;
    this.tokens = 0;
    this.lastRefill = performance.now();
    this.arm();
  }

  async stop(): Promise<void> {
    await this.pause();
  }

  private burst(): number {
    return Math.max(this.ioSizeBytes, this.bytesPerSec / 4);
  }

  private arm(): void {
    if (this.paused || this.bytesPerSec <= 0) {
      this.disarm();
      return;
    }
    if (this.timer) return;
    this.lastRefill = performance.now();
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    const now = performance.now();
    this.tokens = Math.min(this.burst(), this.tokens + ((now - this.lastRefill) / 1000) * this.bytesPerSec);
    this.lastRefill = now;
    if (!this.pumping && this.tokens >= this.ioSizeBytes) {
      this.pumping = this.pump().finally(() => (this.pumping = undefined));
    }
  }

  private async pump(): Promise<void> {
    while (!this.paused && this.bytesPerSec > 0 && this.tokens >= this.ioSizeBytes) {
      this.tokens -= this.ioSizeBytes;
      randomFillSync(this.buffer);
      try {
        await this.opts.write(this.buffer);
      } catch (err) {
        this.failures++;
        if (this.failures <= 3) this.opts.log.warn({ writer: this.opts.name, err: (err as Error).message }, "simulated write failed");
      }
    }
  }
}
