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

/**
 * Holds every lock while `fn` runs. All of them are queued for at once (synchronously), so the
 * caller's place in each queue is the moment of the call (a VM snapshot is one point in time
 * for all its disks), and two callers can never each hold a lock the other waits for.
 */
export async function withLocks<T>(locks: readonly Mutex[], fn: () => Promise<T>): Promise<T> {
  const releases = await Promise.all(locks.map((lock) => lock.acquire()));
  try {
    return await fn();
  } finally {
    for (const release of releases.reverse()) release();
  }
}
