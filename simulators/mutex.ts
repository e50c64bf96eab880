/** A FIFO lock: `acquire` resolves with the function that releases it. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  acquire(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((resolve) => (release = resolve));
    const ready = this.tail.then(() => release);
    this.tail = this.tail.then(() => next);
    return ready;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/** Holds every lock (taken in the given order, so callers using one order cannot deadlock) while `fn` runs. */
export async function withLocks<T>(locks: readonly Mutex[], fn: () => Promise<T>): Promise<T> {
  const releases: Array<() => void> = [];
  try {
    for (const lock of locks) releases.push(await lock.acquire());
    return await fn();
  } finally {
    for (const release of releases.reverse()) release();
  }
}
