/** A freeze this guest processor started and has not thawed yet. */
export interface ActiveFreeze {
  freezeId: string;
  vmId: string;
  sessionId: string;
  /** When the agent reported the applications frozen (guest clock). */
  frozenAt: number;
  /** Local time after which the guest has thawed itself (the freeze expired). */
  deadline: number;
}

/**
 * The freezes in progress, so a draining guest processor can thaw them and a thaw can be checked
 * against its quiesce. Kept in memory: after a crash the guests thaw themselves at their deadline.
 */
export class FreezeRegistry {
  private readonly freezes = new Map<string, ActiveFreeze>();

  add(freeze: ActiveFreeze): void {
    this.freezes.set(freeze.freezeId, freeze);
  }

  get(freezeId: string): ActiveFreeze | undefined {
    return this.freezes.get(freezeId);
  }

  forget(freezeId: string): boolean {
    return this.freezes.delete(freezeId);
  }

  active(): ActiveFreeze[] {
    return [...this.freezes.values()];
  }

  /** Forgets freezes whose deadline passed more than `graceMs` ago and returns them. */
  sweep(now: number, graceMs: number): ActiveFreeze[] {
    const expired = this.active().filter((f) => now > f.deadline + graceMs);
    for (const f of expired) this.freezes.delete(f.freezeId);
    return expired;
  }
}
