import type { Logger } from "../../lib/log.js";
import type { z } from "zod";
import { ErrorCode, FerryError, type ApplicationState } from "../../protocol/mod.js";
import type { ApplicationConfig } from "../config.js";
import { RateWriter } from "../rate-writer.js";

type AppState = z.infer<typeof ApplicationState>;

/** A freeze as the agent remembers it, so a late or repeated thaw gets a truthful answer. */
interface FreezeRecord {
  freezeId: string;
  state: "freezing" | "frozen" | "thawed" | "expired";
  requestedAt: number;
  frozenAt?: number;
  endedAt?: number;
  timer?: NodeJS.Timeout;
  /** Settles the pending freeze request when the freeze is abandoned before the applications froze. */
  abandon?: (err: FerryError) => void;
  done?: Promise<FreezeResult>;
}

export interface FreezeResult {
  freezeId: string;
  frozenAt: number;
  applications: AppState[];
}

export interface ThawResult {
  freezeId: string;
  expired: boolean;
  frozenMs: number;
  applications: AppState[];
}

interface SimApplication {
  config: ApplicationConfig;
  state: AppState["state"];
  writer?: RateWriter;
}

/** Freezes remembered for late thaws; older ones are forgotten (their thaw gets `not_found`). */
const FREEZE_HISTORY = 256;

/**
 * The guest OS of one VM, as its in-guest agent sees it: applications that write while running,
 * and VSS-like freeze/thaw. `freeze` stops the applications' writes, waits for each to flush
 * (`freezeMs`) and reports them frozen. If no thaw comes within the freeze's `timeoutMs` (counted
 * from the freeze request), the guest thaws itself, as VSS does; a later thaw reports `expired`.
 * An application that cannot freeze within the timeout fails the freeze with `timeout`.
 */
export class GuestAgent {
  private readonly apps: SimApplication[];
  private current?: FreezeRecord;
  private readonly history = new Map<string, FreezeRecord>();
  private stopped = false;

  constructor(
    readonly vmId: string,
    readonly os: string,
    applications: ApplicationConfig[],
    private readonly log: Logger,
    /** Performs one application write to the VM's first disk; absent when the disk cannot be written. */
    write?: (data: Buffer) => Promise<void>,
  ) {
    this.apps = applications.map((config) => {
      const app: SimApplication = { config, state: "running" };
      if (write && config.writeBytesPerSec > 0) {
        app.writer = new RateWriter({ name: `${vmId}/${config.name}`, bytesPerSec: config.writeBytesPerSec, ioSizeBytes: 64 * 1024, log, write });
      }
      return app;
    });
  }

  applications(): AppState[] {
    return this.apps.map((a) => ({ name: a.config.name, kind: a.config.kind, state: a.state }));
  }

  info(): { vmId: string; os: string; applications: AppState[] } {
    return { vmId: this.vmId, os: this.os, applications: this.applications() };
  }

  get frozen(): boolean {
    return this.current?.state === "frozen";
  }

  async freeze(freezeId: string, timeoutMs: number): Promise<FreezeResult> {
    if (this.stopped) throw new FerryError(ErrorCode.Unavailable, `guest agent of VM ${this.vmId} is stopping`);
    const current = this.current;
    if (current) {
      // A retried request for the freeze in progress gets the same answer.
      if (current.freezeId === freezeId && current.done) return current.done;
      throw new FerryError(ErrorCode.Conflict, `VM ${this.vmId} is already frozen by ${current.freezeId}`);
    }
    if (this.history.has(freezeId)) throw new FerryError(ErrorCode.Conflict, `freeze ${freezeId} of VM ${this.vmId} has already ended`);
    const record: FreezeRecord = { freezeId, state: "freezing", requestedAt: Date.now() };
    this.current = record;
    this.remember(record);
    record.timer = setTimeout(() => void this.expire(record), timeoutMs);
    record.timer.unref();
    record.done = this.doFreeze(record, timeoutMs);
    return record.done;
  }

  private async doFreeze(record: FreezeRecord, timeoutMs: number): Promise<FreezeResult> {
    const abandoned = new Promise<never>((_, reject) => (record.abandon = reject));
    abandoned.catch(() => undefined);
    // Writes stop first, then each application flushes for its freezeMs; they flush in parallel.
    const frozen = Promise.all(
      this.apps.map(async (app) => {
        await app.writer?.pause();
        await sleep(app.config.freezeMs);
        if (record.state === "freezing") app.state = "frozen";
      }),
    );
    await Promise.race([frozen, abandoned]).catch((err: unknown) => {
      if (err instanceof FerryError && err.code === ErrorCode.Timeout) {
        this.log.warn({ vmId: this.vmId, freezeId: record.freezeId, timeoutMs }, "applications did not freeze in time; freeze abandoned");
      }
      throw err;
    });
    record.state = "frozen";
    record.frozenAt = Date.now();
    this.log.info({ vmId: this.vmId, freezeId: record.freezeId, ms: record.frozenAt - record.requestedAt }, "guest frozen");
    return { freezeId: record.freezeId, frozenAt: record.frozenAt, applications: this.applications() };
  }

  /** The freeze timed out: the guest thaws itself (the snapshot, if any, is crash-consistent). */
  private expire(record: FreezeRecord): void {
    if (record.state === "freezing") {
      this.endFreeze(record, "expired");
      record.abandon?.(new FerryError(ErrorCode.Timeout, `applications of VM ${this.vmId} did not freeze within the freeze timeout`));
      return;
    }
    if (record.state !== "frozen") return;
    this.endFreeze(record, "expired");
    this.log.warn({ vmId: this.vmId, freezeId: record.freezeId, frozenMs: record.endedAt! - record.frozenAt! }, "freeze expired; guest thawed itself");
  }

  private endFreeze(record: FreezeRecord, state: "thawed" | "expired"): void {
    clearTimeout(record.timer);
    record.state = state;
    record.endedAt = Date.now();
    if (this.current === record) this.current = undefined;
    for (const app of this.apps) {
      app.state = "running";
      app.writer?.resume();
    }
  }

  thaw(freezeId: string): ThawResult {
    const record = this.history.get(freezeId);
    if (!record) throw new FerryError(ErrorCode.NotFound, `VM ${this.vmId} has no freeze ${freezeId}`);
    if (record.state === "freezing") {
      // The caller gave up waiting for the freeze: release the applications.
      this.endFreeze(record, "thawed");
      record.abandon?.(new FerryError(ErrorCode.Canceled, `freeze ${freezeId} of VM ${this.vmId} was thawed before it completed`));
    } else if (record.state === "frozen") {
      this.endFreeze(record, "thawed");
      this.log.info({ vmId: this.vmId, freezeId, frozenMs: record.endedAt! - record.frozenAt! }, "guest thawed");
    }
    const frozenMs = record.frozenAt === undefined ? 0 : Math.max(0, record.endedAt! - record.frozenAt);
    return { freezeId, expired: record.state === "expired", frozenMs, applications: this.applications() };
  }

  private remember(record: FreezeRecord): void {
    this.history.set(record.freezeId, record);
    if (this.history.size > FREEZE_HISTORY) {
      const oldest = this.history.keys().next().value;
      if (oldest !== undefined && oldest !== this.current?.freezeId) this.history.delete(oldest);
    }
  }

  /** Stops the application writers; a freeze in progress ends (the process is going away). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.current) {
      const record = this.current;
      this.endFreeze(record, "thawed");
      record.abandon?.(new FerryError(ErrorCode.Unavailable, `guest agent of VM ${this.vmId} is stopping`));
    }
    await Promise.all(this.apps.map((a) => a.writer?.stop()));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
