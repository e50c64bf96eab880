import {
  ErrorCode,
  FerryError,
  MOVER_OFFLINE_AFTER_MS,
  type AssignRequest,
  type Assignment,
  type MoverHeartbeat,
  type Msg,
  type StatusResponse,
} from "../../protocol/mod.js";

/**
 * The scheduler's state and rules, without NATS: a table of movers (from heartbeats), the
 * assignments (task → proxy slot + target-mover slot) and the queue of tasks waiting for slots.
 * Every method takes `now` so tests drive time; nothing here sets timers.
 *
 * ## Queue rule (documented choice)
 *
 * The queue is ordered by priority (higher first), then arrival. Every change (ask, release,
 * heartbeat, tick) runs `dispatch`, which walks the queue in that order:
 *
 * 1. A task whose needed resources (a slot on a target mover of its repository, and a slot on an
 *    allowed proxy if it needs one) all have a free slot gets them at once.
 * 2. A task that cannot start waits. If it is the first waiting task that lacks a given pool
 *    (e.g. "slots of repository r1", "any proxy"), and that pool has online serving movers (it
 *    is only busy, not absent), the task *holds* one free slot of each other resource it needs,
 *    so tasks behind it cannot take them. Holds are recomputed on every dispatch.
 * 3. Tasks behind a waiting one may take whatever is free and not held.
 *
 * So a lower task passes the head when the head waits for a busy resource the lower task does
 * not need, but it can never take a slot the head could use: the head keeps what it can get and
 * takes the missing slot first as soon as it frees, and therefore never starves. Only the first
 * waiter per missing pool holds, so a long queue for one busy repository does not pin every
 * proxy (that would idle the proxies for tasks of other repositories). A task whose resource is
 * absent (no mover online, or all draining) holds nothing: it may wait forever.
 *
 * ## Slot accounting
 *
 * A mover's used slots are the union of the tasks assigned to it and the tasks it reports in
 * its heartbeat's `activeTasks`. After a scheduler restart the assignments are gone but the
 * movers still report what they run, so a busy mover is not overbooked. Tasks released here are
 * not counted even while the mover's last heartbeat still lists them: the manager releases a
 * task once it has ended, and waiting for the next heartbeat would idle the slot for up to a
 * heartbeat interval at every hand-over. (After `RELEASED_MEMORY_MS` a task the mover still
 * reports counts again: it really is running.)
 */

export type MoverRole = "source" | "target";
export type Heartbeat = Msg<typeof MoverHeartbeat>;
export type AssignAsk = Msg<typeof AssignRequest>;
type StatusBody = Msg<typeof StatusResponse>;

export interface SlotTableOptions {
  /** A new assignment must show up in its movers' `activeTasks` within this time. */
  graceMs?: number;
  offlineAfterMs?: number;
  /** After the grace (or once seen), this many consecutive heartbeats without the task reclaim it. */
  missedHeartbeatsToReclaim?: number;
  /** The renewal window of a queued place is 2 × waitMs, but at least this. */
  queueRenewFloorMs?: number;
  /** Offline movers are dropped from the table (and status) after this long. */
  forgetMoverAfterMs?: number;
}

export const DEFAULT_GRACE_MS = 15_000;
/** How long a released task id is remembered so a stale heartbeat listing it does not hold a slot. */
export const RELEASED_MEMORY_MS = 60_000;

export type SchedulerEvent =
  | { kind: "assigned"; assignment: Assignment }
  | { kind: "reclaimed"; assignment: Assignment; reason: string }
  | { kind: "dropped"; taskId: string; sessionId: string; reason: string }
  | { kind: "mover-online"; moverId: string; role: MoverRole }
  | { kind: "mover-offline"; moverId: string; role: MoverRole; lastSeenAt: number };

export type AskOutcome =
  | { status: "assigned"; assignment: Assignment }
  | { status: "queued"; position: number; reason: string };

interface MoverRecord {
  moverId: string;
  role: MoverRole;
  host: string;
  maxTasks: number;
  repositoryId?: string;
  state: "serving" | "draining";
  startedAt: number;
  lastSeenAt: number;
  offline: boolean;
  activeTasks: Set<string>;
}

interface Watch {
  seen: boolean;
  misses: number;
}

interface AssignmentRecord {
  assignment: Assignment;
  /** Per mover key of the assignment: reported running yet, consecutive heartbeats without it. */
  watch: Map<string, Watch>;
}

interface QueueEntry {
  taskId: string;
  sessionId: string;
  priority: number;
  repositoryId: string;
  needsProxy: boolean;
  proxies: string[];
  since: number;
  expiresAt: number;
  /** Why it waits, as of the last dispatch. */
  reason: string;
}

/** One resource a task needs: the movers that could give it a slot. */
interface Need {
  /** Identifies the pool for the "first waiter holds" rule. */
  pool: string;
  candidates: MoverRecord[];
  /** Set when no candidate exists (offline, draining or unknown): the task cannot start at all. */
  absentReason?: string;
  /** Describes the pool's slots in reasons: "slots of repository r1", "proxy slots". */
  label: string;
}

/** A need without a free slot: absent when `need.absentReason` is set, else busy. */
interface Lack {
  need: Need;
  /** Busy only because its free slots are held for tasks ahead in the queue. */
  heldOnly: boolean;
}

interface Plan {
  /** A mover with a free slot for each need that has one. */
  picks: MoverRecord[];
  /** Empty when the task can start. */
  lacking: Lack[];
}

export function moverKey(role: MoverRole, moverId: string): string {
  return `${role}:${moverId}`;
}

export class SlotTable {
  private readonly movers = new Map<string, MoverRecord>();
  private readonly assignments = new Map<string, AssignmentRecord>();
  /** Task ids assigned per mover key. */
  private readonly assignedOn = new Map<string, Set<string>>();
  /** Released task id → when; see "Slot accounting". */
  private readonly releasedAt = new Map<string, number>();
  /** Sorted: priority desc, then arrival. */
  private queue: QueueEntry[] = [];
  private readonly graceMs: number;
  private readonly offlineAfterMs: number;
  private readonly missesToReclaim: number;
  private readonly renewFloorMs: number;
  private readonly forgetAfterMs: number;

  constructor(
    opts: SlotTableOptions = {},
    private readonly onEvent: (event: SchedulerEvent) => void = () => undefined,
  ) {
    this.graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
    this.offlineAfterMs = opts.offlineAfterMs ?? MOVER_OFFLINE_AFTER_MS;
    this.missesToReclaim = opts.missedHeartbeatsToReclaim ?? 2;
    this.renewFloorMs = opts.queueRenewFloorMs ?? 1_000;
    this.forgetAfterMs = opts.forgetMoverAfterMs ?? 10 * 60_000;
  }

  // --- inputs ---

  /** Records a mover's heartbeat, reclaims slots of tasks it no longer reports, and dispatches. */
  heartbeat(hb: Heartbeat, now: number): void {
    const key = moverKey(hb.role, hb.moverId);
    const previous = this.movers.get(key);
    const record: MoverRecord = {
      moverId: hb.moverId,
      role: hb.role,
      host: hb.host,
      maxTasks: hb.maxTasks,
      state: hb.state,
      startedAt: hb.startedAt,
      lastSeenAt: now,
      offline: false,
      activeTasks: new Set(hb.activeTasks),
    };
    if (hb.role === "target" && hb.repositoryId !== undefined) record.repositoryId = hb.repositoryId;
    this.movers.set(key, record);
    if (!previous || previous.offline) this.onEvent({ kind: "mover-online", moverId: hb.moverId, role: hb.role });
    this.watchAssignments(key, record, now);
    this.dispatch(now);
  }

  /**
   * Asks for slots for a task, or renews its place. Idempotent per taskId: an assigned task gets
   * its assignment back; a queued one keeps its place and gets a new renewal deadline.
   */
  ask(req: AssignAsk, now: number): AskOutcome {
    const assigned = this.assignments.get(req.taskId);
    if (assigned) {
      this.checkSession(req.taskId, assigned.assignment.sessionId, req.sessionId);
      return { status: "assigned", assignment: assigned.assignment };
    }
    // The caller may be held waitMs, then has 2 × waitMs to ask again.
    const expiresAt = now + req.waitMs + Math.max(2 * req.waitMs, this.renewFloorMs);
    const queued = this.queue.find((e) => e.taskId === req.taskId);
    if (queued) {
      this.checkSession(req.taskId, queued.sessionId, req.sessionId);
      queued.expiresAt = Math.max(queued.expiresAt, expiresAt);
    } else {
      this.enqueue({
        taskId: req.taskId,
        sessionId: req.sessionId,
        priority: req.priority,
        repositoryId: req.repositoryId,
        needsProxy: req.needsProxy,
        proxies: [...req.proxies],
        since: now,
        expiresAt,
        reason: "",
      });
    }
    this.dispatch(now);
    const outcome = this.lookup(req.taskId);
    if (!outcome) throw new FerryError(ErrorCode.Internal, `task ${req.taskId} vanished while being queued`);
    return outcome;
  }

  /**
   * Frees a task's slots, or takes it out of the queue. Returns false when the task is neither
   * assigned nor queued (already released, reclaimed, or never asked): release is idempotent.
   */
  release(taskId: string, now: number): boolean {
    if (this.assignments.has(taskId)) {
      this.unassign(taskId);
      this.releasedAt.set(taskId, now);
      this.dispatch(now);
      return true;
    }
    const index = this.queue.findIndex((e) => e.taskId === taskId);
    if (index < 0) return false;
    this.queue.splice(index, 1);
    this.dispatch(now);
    return true;
  }

  /** Time passes: movers go offline (their assignments are released), queued places expire. */
  tick(now: number): void {
    let changed = false;
    for (const [key, mover] of this.movers) {
      const silentMs = now - mover.lastSeenAt;
      if (!mover.offline && silentMs > this.offlineAfterMs) {
        mover.offline = true;
        changed = true;
        this.onEvent({ kind: "mover-offline", moverId: mover.moverId, role: mover.role, lastSeenAt: mover.lastSeenAt });
        for (const taskId of [...(this.assignedOn.get(key) ?? [])]) {
          const record = this.assignments.get(taskId);
          if (!record) continue;
          this.unassign(taskId);
          this.onEvent({
            kind: "reclaimed",
            assignment: record.assignment,
            reason: `${mover.role} mover ${mover.moverId} went offline (silent for ${silentMs} ms)`,
          });
        }
        // What it ran is unknown now; a returning mover reports it again.
        mover.activeTasks.clear();
      }
      if (mover.offline && silentMs > this.forgetAfterMs) this.movers.delete(key);
    }
    for (const [taskId, at] of this.releasedAt) if (now - at > RELEASED_MEMORY_MS) this.releasedAt.delete(taskId);
    const expired = this.queue.filter((e) => e.expiresAt < now);
    if (expired.length > 0) {
      changed = true;
      this.queue = this.queue.filter((e) => e.expiresAt >= now);
      for (const e of expired) {
        this.onEvent({ kind: "dropped", taskId: e.taskId, sessionId: e.sessionId, reason: "queued place not renewed in time" });
      }
    }
    if (changed) this.dispatch(now);
  }

  // --- queries ---

  /** Where a task stands: assigned, queued (1-based position and why), or unknown. */
  lookup(taskId: string): AskOutcome | undefined {
    const assigned = this.assignments.get(taskId);
    if (assigned) return { status: "assigned", assignment: assigned.assignment };
    const index = this.queue.findIndex((e) => e.taskId === taskId);
    if (index < 0) return undefined;
    const entry = this.queue[index]!;
    return { status: "queued", position: index + 1, reason: entry.reason };
  }

  assignment(taskId: string): Assignment | undefined {
    return this.assignments.get(taskId)?.assignment;
  }

  /** Used slots of a mover: tasks assigned to it plus tasks it reports running. */
  usedSlots(role: MoverRole, moverId: string): number {
    const key = moverKey(role, moverId);
    const assigned = this.assignedOn.get(key) ?? new Set<string>();
    let used = assigned.size;
    for (const taskId of this.movers.get(key)?.activeTasks ?? []) if (!assigned.has(taskId) && !this.releasedAt.has(taskId)) used++;
    return used;
  }

  status(now: number): Omit<StatusBody, "v" | "type"> {
    return {
      movers: [...this.movers.values()]
        .sort((a, b) => a.role.localeCompare(b.role) || a.moverId.localeCompare(b.moverId))
        .map((m) => ({
          moverId: m.moverId,
          role: m.role,
          host: m.host,
          ...(m.repositoryId === undefined ? {} : { repositoryId: m.repositoryId }),
          maxTasks: m.maxTasks,
          usedSlots: this.usedSlots(m.role, m.moverId),
          online: this.isOnline(m, now),
          state: m.state,
          lastSeenAt: m.lastSeenAt,
        })),
      assignments: [...this.assignments.values()].map((r) => r.assignment),
      queue: this.queue.map((e) => ({ taskId: e.taskId, sessionId: e.sessionId, priority: e.priority, since: e.since })),
    };
  }

  get queueLength(): number {
    return this.queue.length;
  }

  // --- rules ---

  private checkSession(taskId: string, known: string, asked: string): void {
    if (known !== asked) {
      throw new FerryError(ErrorCode.Conflict, `task ${taskId} belongs to session ${known}, not ${asked}`);
    }
  }

  private enqueue(entry: QueueEntry): void {
    // Stable insert: after every entry of higher or equal priority (equal ones arrived earlier).
    const index = this.queue.findIndex((e) => e.priority < entry.priority);
    if (index < 0) this.queue.push(entry);
    else this.queue.splice(index, 0, entry);
  }

  private isOnline(m: MoverRecord, now: number): boolean {
    return !m.offline && now - m.lastSeenAt <= this.offlineAfterMs;
  }

  private needsOf(entry: QueueEntry, now: number): Need[] {
    const usable = (m: MoverRecord) => this.isOnline(m, now) && m.state === "serving";
    const needs: Need[] = [];
    const targets = [...this.movers.values()].filter((m) => m.role === "target" && m.repositoryId === entry.repositoryId);
    const target: Need = { pool: `repo:${entry.repositoryId}`, candidates: targets.filter(usable), label: `slots of repository ${entry.repositoryId}` };
    if (target.candidates.length === 0) {
      target.absentReason = targets.some((m) => this.isOnline(m, now))
        ? `all target movers of repository ${entry.repositoryId} are draining`
        : `no target mover online for repository ${entry.repositoryId}`;
    }
    needs.push(target);
    if (entry.needsProxy) {
      const allowed = new Set(entry.proxies);
      const proxies = [...this.movers.values()].filter((m) => m.role === "source" && (allowed.size === 0 || allowed.has(m.moverId)));
      const restricted = entry.proxies.length > 0;
      const proxy: Need = {
        pool: restricted ? `proxy:${[...allowed].sort().join(",")}` : "proxy:*",
        candidates: proxies.filter(usable),
        label: restricted ? `slots of proxies ${entry.proxies.join(", ")}` : "proxy slots",
      };
      if (proxy.candidates.length === 0) {
        const online = proxies.some((m) => this.isOnline(m, now));
        proxy.absentReason = online
          ? restricted
            ? `allowed proxies ${entry.proxies.join(", ")} are draining`
            : "all proxies are draining"
          : restricted
            ? `none of proxies ${entry.proxies.join(", ")} online`
            : "no proxy online";
      }
      needs.push(proxy);
    }
    return needs;
  }

  /** Picks the least-loaded mover per need: most free slots, then fewest used, then id. */
  private plan(entry: QueueEntry, now: number, held: Map<string, number>): Plan {
    const needs = this.needsOf(entry, now);
    const picks: MoverRecord[] = [];
    const lacking: Lack[] = [];
    for (const need of needs) {
      if (need.absentReason !== undefined) {
        lacking.push({ need, heldOnly: false });
        continue;
      }
      let best: { mover: MoverRecord; free: number; used: number } | undefined;
      let freeBeforeHolds = 0;
      for (const mover of need.candidates) {
        const used = this.usedSlots(mover.role, mover.moverId);
        const unheld = mover.maxTasks - used;
        freeBeforeHolds += Math.max(0, unheld);
        const free = unheld - (held.get(moverKey(mover.role, mover.moverId)) ?? 0);
        if (free <= 0) continue;
        if (
          !best ||
          free > best.free ||
          (free === best.free && (used < best.used || (used === best.used && mover.moverId < best.mover.moverId)))
        ) {
          best = { mover, free, used };
        }
      }
      if (best) picks.push(best.mover);
      else lacking.push({ need, heldOnly: freeBeforeHolds > 0 });
    }
    return { picks, lacking };
  }

  private reasonOf(lacking: Lack[]): string {
    return lacking
      .map(({ need, heldOnly }) => {
        if (need.absentReason !== undefined) return need.absentReason;
        if (heldOnly) return `the free ${need.label} are held for tasks ahead in the queue`;
        const total = need.candidates.reduce((sum, m) => sum + m.maxTasks, 0);
        return `all ${total} ${need.label} busy`;
      })
      .join("; ");
  }

  /** Walks the queue in order and gives slots by the queue rule documented at the top. */
  private dispatch(now: number): void {
    const held = new Map<string, number>();
    const poolsWithWaiter = new Set<string>();
    const stillQueued: QueueEntry[] = [];
    for (const entry of this.queue) {
      const plan = this.plan(entry, now, held);
      if (plan.lacking.length === 0) {
        this.assign(entry, plan.picks, now);
        continue;
      }
      stillQueued.push(entry);
      entry.reason = this.reasonOf(plan.lacking);
      const onlyBusy = plan.lacking.every((l) => l.need.absentReason === undefined);
      const firstWaiter = plan.lacking.every((l) => !poolsWithWaiter.has(l.need.pool));
      if (onlyBusy && firstWaiter) {
        for (const mover of plan.picks) {
          const key = moverKey(mover.role, mover.moverId);
          held.set(key, (held.get(key) ?? 0) + 1);
        }
      }
      for (const l of plan.lacking) poolsWithWaiter.add(l.need.pool);
    }
    this.queue = stillQueued;
  }

  private assign(entry: QueueEntry, picks: MoverRecord[], now: number): void {
    const target = picks.find((m) => m.role === "target")!;
    const proxy = picks.find((m) => m.role === "source");
    const assignment: Assignment = {
      taskId: entry.taskId,
      sessionId: entry.sessionId,
      ...(proxy ? { proxyId: proxy.moverId } : {}),
      targetMoverId: target.moverId,
      repositoryId: entry.repositoryId,
      assignedAt: now,
    };
    // Single-instance scheduler: the reservation lives in this map. Two-scheduler roadmap: reserve
    // here with a KV compare-and-set per mover slot (key `slot.<moverId>.<n>`, create-if-absent),
    // and only record the assignment when every CAS succeeded; undo the ones taken on failure.
    const watch = new Map<string, Watch>();
    for (const mover of picks) {
      const key = moverKey(mover.role, mover.moverId);
      watch.set(key, { seen: mover.activeTasks.has(entry.taskId), misses: 0 });
      let set = this.assignedOn.get(key);
      if (!set) this.assignedOn.set(key, (set = new Set()));
      set.add(entry.taskId);
    }
    this.assignments.set(entry.taskId, { assignment, watch });
    this.releasedAt.delete(entry.taskId);
    this.onEvent({ kind: "assigned", assignment });
  }

  private unassign(taskId: string): void {
    const record = this.assignments.get(taskId);
    if (!record) return;
    this.assignments.delete(taskId);
    for (const key of record.watch.keys()) this.assignedOn.get(key)?.delete(taskId);
  }

  /**
   * Leak detection on each heartbeat of a mover: a task assigned to it must appear in its
   * `activeTasks` within the grace period; once seen (or once the grace is over) it is reclaimed
   * when missing from consecutive heartbeats (normally the manager releases it first).
   */
  private watchAssignments(key: string, mover: MoverRecord, now: number): void {
    for (const taskId of [...(this.assignedOn.get(key) ?? [])]) {
      const record = this.assignments.get(taskId);
      const watch = record?.watch.get(key);
      if (!record || !watch) continue;
      if (mover.activeTasks.has(taskId)) {
        watch.seen = true;
        watch.misses = 0;
        continue;
      }
      if (now - record.assignment.assignedAt < this.graceMs) continue;
      let reason: string | undefined;
      if (!watch.seen) {
        reason = `${mover.role} mover ${mover.moverId} did not report the task running within ${this.graceMs} ms`;
      } else if (++watch.misses >= this.missesToReclaim) {
        reason = `${mover.role} mover ${mover.moverId} stopped reporting the task for ${watch.misses} heartbeats`;
      }
      if (reason !== undefined) {
        this.unassign(taskId);
        this.onEvent({ kind: "reclaimed", assignment: record.assignment, reason });
      }
    }
  }
}
