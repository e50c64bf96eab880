/**
 * Fixed set of block buffers reused for every read: the mover's memory stays bounded by
 * `count × size` instead of growing with garbage the collector frees late.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly waiters: Array<(b: Buffer) => void> = [];

  constructor(
    readonly size: number,
    readonly count: number,
  ) {
    for (let i = 0; i < count; i++) this.free.push(Buffer.allocUnsafeSlow(size));
  }

  acquire(): Promise<Buffer> | Buffer {
    const buf = this.free.pop();
    if (buf) return buf;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(buf: Buffer): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(buf);
    else this.free.push(buf);
  }
}
