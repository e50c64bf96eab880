import { hostname } from "node:os";
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm, type Service } from "@nats-io/services";
import { ErrorCode, FerryError, SERVICE_NAME_OF_ROLE, type ActorRole, type MessageDef } from "../protocol/mod.js";
import { ensureJetStreamResources } from "./jetstream-setup.js";
import { createLogger, type Logger } from "./log.js";
import { connectNats } from "./nats.js";
import { serveEndpoint, type EndpointSpec } from "./rpc.js";
import { FERRY_VERSION } from "./version.js";

/**
 * An actor's lifecycle: starting → serving → draining → stopped, or → failed from any state.
 * Draining refuses new requests (`unavailable`), lets in-flight work finish within the drain
 * timeout, then aborts what is left through `shutdownSignal`.
 */
export type ActorState = "starting" | "serving" | "draining" | "stopped" | "failed";

/** After the drain timeout aborts in-flight work, how long its cleanup may take. */
const ABORTED_WORK_GRACE_MS = 60_000;

export interface ActorOptions {
  role: ActorRole;
  id: string;
  natsUrl?: string;
  /** How long SIGTERM waits for in-flight work before aborting it. */
  drainTimeoutMs?: number;
  /** Extra fields for `$SRV.INFO` metadata. */
  metadata?: Record<string, string>;
}

export class Actor {
  readonly role: ActorRole;
  readonly id: string;
  readonly log: Logger;
  readonly startedAt = Date.now();
  private _state: ActorState = "starting";
  private _nc?: NatsConnection;
  private _service?: Service;
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly drainHooks: Array<() => Promise<void> | void> = [];
  private readonly stopHooks: Array<() => Promise<void> | void> = [];
  private readonly shutdown = new AbortController();
  private stopping?: Promise<void>;

  private constructor(private readonly opts: ActorOptions) {
    this.role = opts.role;
    this.id = opts.id;
    this.log = createLogger(`ferry-${opts.role}`, { actor: opts.role, id: opts.id });
  }

  /** Connects, makes sure JetStream state exists, and registers with the services API. */
  static async start(opts: ActorOptions): Promise<Actor> {
    const actor = new Actor(opts);
    try {
      actor._nc = await connectNats({ servers: opts.natsUrl, name: `ferry-${opts.role}-${opts.id}` });
      await ensureJetStreamResources(actor._nc);
      actor._service = await new Svcm(actor._nc).add({
        name: SERVICE_NAME_OF_ROLE[opts.role],
        version: FERRY_VERSION,
        description: `Ferry ${opts.role}`,
        metadata: { id: opts.id, role: opts.role, host: hostname(), ...opts.metadata },
      });
      void actor._nc.closed().then((err) => {
        if (err && actor._state !== "stopped") {
          actor.log.error({ err: err.message }, "NATS connection closed with an error");
          actor._state = "failed";
        }
      });
    } catch (err) {
      actor._state = "failed";
      actor.log.error({ err: (err as Error).message }, "actor failed to start");
      await actor._nc?.close().catch(() => undefined);
      throw err;
    }
    return actor;
  }

  get state(): ActorState {
    return this._state;
  }
  get nc(): NatsConnection {
    if (!this._nc) throw new FerryError(ErrorCode.Internal, "actor not connected");
    return this._nc;
  }
  get service(): Service {
    if (!this._service) throw new FerryError(ErrorCode.Internal, "actor service not registered");
    return this._service;
  }
  /** Aborted when draining runs out of time: long tasks stop at their next step. */
  get shutdownSignal(): AbortSignal {
    return this.shutdown.signal;
  }
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Marks the actor ready; call after every endpoint and subscription is in place. */
  serving(): void {
    this._state = "serving";
    this.log.info({ version: FERRY_VERSION }, "serving");
  }

  /** Serves a request subject, refusing new requests while draining and counting in-flight work. */
  endpoint<Req extends MessageDef, Res extends MessageDef>(spec: EndpointSpec<Req, Res>): void {
    serveEndpoint(this.service, this.log, spec, {
      gate: () =>
        this._state === "draining" || this._state === "stopped"
          ? new FerryError(ErrorCode.Unavailable, `${this.role} ${this.id} is draining`)
          : undefined,
      track: (p) => this.track(p),
    });
  }

  /** Counts work as in flight until it settles; draining waits for it. */
  track<T>(work: Promise<T>): Promise<T> {
    this.inFlight.add(work);
    const forget = () => this.inFlight.delete(work);
    work.then(forget, forget);
    return work;
  }

  /** Runs first when draining starts (stop taking new work: consumers, heartbeats as serving). */
  onDrain(hook: () => Promise<void> | void): void {
    this.drainHooks.push(hook);
  }
  /** Runs after in-flight work is done, before the connection closes. */
  onStop(hook: () => Promise<void> | void): void {
    this.stopHooks.push(hook);
  }

  /** Drains and stops; the first error is reported, later ones logged. Idempotent. */
  stop(reason = "stop requested"): Promise<void> {
    this.stopping ??= this.doStop(reason);
    return this.stopping;
  }

  private async doStop(reason: string): Promise<void> {
    this.log.info({ reason, inFlight: this.inFlight.size }, "draining");
    this._state = "draining";
    let firstError: unknown;
    const runHooks = async (hooks: Array<() => Promise<void> | void>) => {
      for (const hook of hooks) {
        try {
          await hook();
        } catch (err) {
          firstError ??= err;
          this.log.error({ err: (err as Error).message }, "shutdown hook failed");
        }
      }
    };
    await runHooks(this.drainHooks);
    const timeoutMs = this.opts.drainTimeoutMs ?? 60_000;
    const drained = await Promise.race([
      Promise.allSettled([...this.inFlight]).then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref()),
    ]);
    if (!drained) {
      this.log.warn({ inFlight: this.inFlight.size, timeoutMs }, "drain timed out; aborting in-flight work");
      this.shutdown.abort(new FerryError(ErrorCode.Canceled, `${this.role} ${this.id} is shutting down`));
      // Aborted work still cleans up (snapshots removed, slots released): give it time to.
      await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, ABORTED_WORK_GRACE_MS).unref())]);
    }
    await runHooks(this.stopHooks);
    try {
      await this._service?.stop();
      await this._nc?.drain();
    } catch (err) {
      firstError ??= err;
    }
    this._state = firstError ? "failed" : "stopped";
    this.log.info({ state: this._state }, "stopped");
    if (firstError) throw firstError;
  }

  /** SIGTERM and SIGINT drain and exit: 0 when clean, 1 otherwise. */
  exitOnSignals(): void {
    const onSignal = (signal: NodeJS.Signals) => {
      // pino writes asynchronously: flush so the last lines ("stopped") are not lost at exit.
      const exit = (code: number) => this.log.flush(() => process.exit(code));
      this.stop(`received ${signal}`).then(
        () => exit(0),
        () => exit(1),
      );
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  }
}
