/** A token bucket: `take(n)` resolves when n more bytes may be read at `bytesPerSec`. 0 means unlimited. */
export class Throttle {
  private available: number;
  private last = performance.now();

  constructor(private readonly bytesPerSec: number) {
    this.available = bytesPerSec; // one second of burst
  }

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.bytesPerSec <= 0) return;
    for (;;) {
      const now = performance.now();
      this.available = Math.min(this.bytesPerSec, this.available + ((now - this.last) / 1000) * this.bytesPerSec);
      this.last = now;
      if (this.available >= bytes || this.available >= this.bytesPerSec) {
        this.available -= bytes;
        return;
      }
      const waitMs = Math.ceil(((bytes - this.available) / this.bytesPerSec) * 1000);
      await new Promise((r) => setTimeout(r, Math.min(waitMs, 250)));
      signal?.throwIfAborted();
    }
  }
}
