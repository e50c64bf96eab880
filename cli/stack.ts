import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import { ActorRole, Buckets, ErrorCode, FerryError, SERVICE_NAME_OF_ROLE, ServiceName } from "../protocol/mod.js";
import { ConfigStore } from "../lib/config-store.js";
import { ensureJetStreamResources, openBucket } from "../lib/jetstream-setup.js";
import { connectNats } from "../lib/nats.js";
import { NatsServer } from "../lib/nats-server.js";
import { cliEntry, projectRoot } from "../lib/paths.js";
import type { SimulatorConfigInput } from "../simulators/config.js";

/**
 * The embedded local stack: nats-server (unless one is given), the hypervisor simulator and every
 * actor, each its own OS process started as `node dist/cli/main.js …`, as in production. Used by
 * `ferry up`, `ferry demo`, the integration tests and the benchmark.
 */
export interface StackOptions {
  /** Everything the stack writes goes here: nats/, logs/, repository/, simulator.json. */
  workdir: string;
  /** Use this NATS server instead of starting one in workdir/nats. */
  natsUrl?: string;
  /** Written to workdir/simulator.json for `ferry simulator --config`. */
  simulatorConfig: SimulatorConfigInput;
  /** Source movers `proxy-1..N`. */
  proxies?: number;
  /** Task slots per source mover. */
  proxySlots?: number;
  repositoryId?: string;
  /** Task slots of the repository (and its target mover). */
  repositorySlots?: number;
  /** Sessions the manager runs at once; the manager's default when unset. */
  managerConcurrency?: number;
  /** How long each process may take to answer `$SRV.PING` after it was spawned. */
  readyTimeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before SIGKILL. */
  stopTimeoutMs?: number;
  /**
   * max_payload of the nats-server the stack starts. Default 2 MiB, so a 1 MiB block that does not
   * compress travels as one frame; with the stock 1 MiB it is split in two (measured ~20% slower,
   * docs/performance.md). Ferry works with either.
   */
  maxPayloadBytes?: number;
  /** Extra environment for every child (e.g. FERRY_LOG_LEVEL). */
  env?: Record<string, string>;
  /** Progress lines ("starting …", "ready"); silent when unset. */
  log?: (line: string) => void;
}

export type StackProcessKind = ActorRole | "simulator";

/** What the stack starts as one child process: `node dist/cli/main.js <args>`. */
export interface ProcessSpec {
  /** Unique in the stack; also the log file's name: `logs/<name>.log`. */
  readonly name: string;
  readonly kind: StackProcessKind;
  /** The instance id it registers with (`metadata.id` in `$SRV.PING` replies). */
  readonly id: string;
  readonly serviceName: ServiceName;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

/** One child process of the stack. */
export interface StackProcess extends ProcessSpec {
  readonly logFile: string;
  child: ChildProcess;
}

export interface Stack {
  readonly natsUrl: string;
  readonly workdir: string;
  readonly hypervisorId: string;
  readonly repositoryId: string;
  readonly repositoryPath: string;
  /** The nats-server the stack started, or undefined when it was given a URL. */
  readonly nats: NatsServer | undefined;
  readonly processes: readonly StackProcess[];
  /** The process named `name` (e.g. "manager", "proxy-1", "repo-1-mover", "simulator"). */
  process(name: string): StackProcess;
  /** Stops one process (SIGTERM, SIGKILL after the stop timeout), leaving the others running. */
  stopProcess(name: string, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a stopped (or crashed) process again with the same arguments and waits until it answers. */
  startProcess(name: string): Promise<void>;
  /**
   * SIGTERM to the children (manager, then the other actors, then the simulator), SIGKILL to any
   * still running after the stop timeout, then stops nats-server. Idempotent.
   */
  stop(): Promise<void>;
}

/** glibc allocator settings measured to help the movers' data path (fewer arenas, less trimming). */
export const MOVER_MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: "2",
  MALLOC_MMAP_THRESHOLD_: "33554432",
  MALLOC_TRIM_THRESHOLD_: "536870912",
  MALLOC_TOP_PAD_: "67108864",
};

const DEFAULT_READY_TIMEOUT_MS = 30_000;
export const STACK_MAX_PAYLOAD_BYTES = 2 * 1024 * 1024;
const DEFAULT_STOP_TIMEOUT_MS = 20_000;

// Every child of every stack in this process: killed if the process exits without stopping them.
const liveChildren = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of liveChildren) child.kill("SIGKILL");
});

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (!isRunning(child)) return Promise.resolve(true);
  return new Promise((resolveExit) => {
    const timer = setTimeout(() => resolveExit(false), timeoutMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolveExit(true);
    });
  });
}

/**
 * nats-server cannot preload parent-watch.js, so a tiny shell loop stops it when this process
 * dies without stopping the stack (SIGKILL, crash).
 */
function spawnReaper(pid: number): ChildProcess {
  const script = `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${pid} 2>/dev/null; do sleep 1; done; kill -TERM ${pid} 2>/dev/null`;
  const reaper = spawn("/bin/sh", ["-c", script], { stdio: "ignore", detached: true });
  reaper.unref();
  liveChildren.add(reaper);
  reaper.once("exit", () => liveChildren.delete(reaper));
  return reaper;
}

function parentWatchUrl(): string {
  return pathToFileURL(join(projectRoot(), "dist", "cli", "parent-watch.js")).href;
}

/**
 * The ids of the instances of `serviceName` that answer a ping now: actors put theirs in
 * `metadata.id`, the simulator its hypervisor id in `metadata.hypervisorId`.
 */
async function pingIds(nc: NatsConnection, serviceName: ServiceName): Promise<Set<string>> {
  const ids = new Set<string>();
  try {
    const replies = await new Svcm(nc).client({ strategy: "stall", stall: 150, maxWait: 1_000 }).ping(serviceName);
    for await (const identity of replies) {
      for (const id of [identity.metadata?.id, identity.metadata?.hypervisorId]) if (id) ids.add(id);
    }
  } catch {
    // no responders yet
  }
  return ids;
}

/** The processes of a stack, in start order; pure, so the layout is easy to read and test. */
export function stackProcessSpecs(opts: {
  simulatorConfigPath: string;
  hypervisorId: string;
  proxies: number;
  proxySlots: number;
  repositoryId: string;
  repositoryPath: string;
  repositorySlots: number;
  managerConcurrency?: number;
}): ProcessSpec[] {
  const actor = (role: ActorRole, id: string, extra: string[] = [], env: Record<string, string> = {}): ProcessSpec => ({
    name: id,
    kind: role,
    id,
    serviceName: SERVICE_NAME_OF_ROLE[role],
    args: ["actor", role, "--id", id, ...extra],
    env,
  });
  const specs: ProcessSpec[] = [
    {
      name: "simulator",
      kind: "simulator",
      id: opts.hypervisorId,
      serviceName: ServiceName.hypervisorSimulator,
      args: ["simulator", "--config", opts.simulatorConfigPath],
      env: {},
    },
    actor(ActorRole.scheduler, "scheduler"),
    actor(ActorRole.broker, "broker"),
    actor(ActorRole.guestProcessor, "guest-processor"),
  ];
  for (let i = 1; i <= opts.proxies; i++) {
    specs.push(actor(ActorRole.sourceMover, `proxy-${i}`, ["--slots", String(opts.proxySlots)], { ...MOVER_MALLOC_ENV }));
  }
  specs.push(
    actor(
      ActorRole.targetMover,
      `${opts.repositoryId}-mover`,
      ["--slots", String(opts.repositorySlots), "--repository", opts.repositoryId, "--path", opts.repositoryPath],
      { ...MOVER_MALLOC_ENV },
    ),
  );
  specs.push(actor(ActorRole.manager, "manager", opts.managerConcurrency === undefined ? [] : ["--concurrency", String(opts.managerConcurrency)]));
  return specs;
}

/**
 * Starts the stack and resolves once every process answers `$SRV.PING`. On any failure the
 * processes already started are stopped before the error is thrown.
 */
export async function startStack(options: StackOptions): Promise<Stack> {
  const workdir = resolve(options.workdir);
  const log = options.log ?? (() => undefined);
  const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  const stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  const repositoryId = options.repositoryId ?? "repo-1";
  const repositoryPath = join(workdir, "repository");
  const hypervisorId = options.simulatorConfig.hypervisorId;
  const proxies = options.proxies ?? 1;
  const proxySlots = options.proxySlots ?? 2;
  const repositorySlots = options.repositorySlots ?? 4;
  for (const built of [cliEntry(), fileURLToPath(parentWatchUrl())]) {
    if (!existsSync(built)) throw new FerryError(ErrorCode.Unavailable, `${built} is missing: run \`npm run build\` first`, { retryable: false });
  }
  const logsDir = join(workdir, "logs");
  mkdirSync(logsDir, { recursive: true });
  mkdirSync(repositoryPath, { recursive: true });

  let nats: NatsServer | undefined;
  let natsReaper: ChildProcess | undefined;
  let nc: NatsConnection | undefined;
  const processes: StackProcess[] = [];

  const stopChild = async (proc: StackProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> => {
    const { child } = proc;
    if (!isRunning(child)) return;
    child.kill(signal);
    if (!(await waitExit(child, stopTimeoutMs))) {
      log(`${proc.name} did not stop within ${stopTimeoutMs} ms; killing it (see ${proc.logFile})`);
      child.kill("SIGKILL");
      await waitExit(child, 5_000);
    }
  };

  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> => {
    stopping ??= (async () => {
      // The manager first: while it drains, its sessions still need the other actors (to cancel
      // tasks, release slots, remove snapshots); the simulator last, for the guest thaws.
      const stage = (kinds: readonly StackProcessKind[]) => Promise.all(processes.filter((p) => kinds.includes(p.kind)).map((p) => stopChild(p)));
      await stage(["manager"]);
      await stage(["scheduler", "broker", "guest-processor", "source-mover", "target-mover"]);
      await stage(["simulator"]);
      await nc?.close().catch(() => undefined);
      await nats?.stop();
      natsReaper?.kill("SIGKILL");
    })();
    return stopping;
  };

  try {
    if (options.natsUrl === undefined) {
      log("starting nats-server");
      nats = await NatsServer.start({ dir: join(workdir, "nats"), maxPayloadBytes: options.maxPayloadBytes ?? STACK_MAX_PAYLOAD_BYTES });
      if (nats.pid !== undefined) natsReaper = spawnReaper(nats.pid);
    }
    const natsUrl = options.natsUrl ?? nats!.url;
    nc = await connectNats({ servers: natsUrl, name: `ferry-stack-${process.pid}` });
    await ensureJetStreamResources(nc);

    const config = new ConfigStore(await openBucket(nc, Buckets.config));
    await config.putHypervisor({ id: hypervisorId, kind: "simulator", description: "embedded simulator" });
    for (let i = 1; i <= proxies; i++) await config.putProxy({ id: `proxy-${i}`, maxTasks: proxySlots });
    await config.putRepository({ id: repositoryId, path: repositoryPath, maxTasks: repositorySlots });

    const simulatorConfigPath = join(workdir, "simulator.json");
    writeFileSync(simulatorConfigPath, `${JSON.stringify(options.simulatorConfig, null, 2)}\n`);

    const specs = stackProcessSpecs({
      simulatorConfigPath,
      hypervisorId,
      proxies,
      proxySlots,
      repositoryId,
      repositoryPath,
      repositorySlots,
      ...(options.managerConcurrency === undefined ? {} : { managerConcurrency: options.managerConcurrency }),
    });

    const spawnChild = (spec: ProcessSpec, logFile: string): ChildProcess => {
      const fd = openSync(logFile, "a");
      try {
        // FERRY_CHILD_NODE_ARGS passes Node flags to every child, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
        const nodeArgs = (process.env.FERRY_CHILD_NODE_ARGS ?? "").split(" ").filter(Boolean);
        const child = spawn(process.execPath, [...nodeArgs, "--import", parentWatchUrl(), cliEntry(), ...spec.args], {
          cwd: workdir,
          env: {
            ...process.env,
            NATS_URL: natsUrl,
            FERRY_LOG_PRETTY: "0",
            FERRY_PARENT_PID: String(process.pid),
            ...options.env,
            ...spec.env,
          },
          stdio: ["ignore", fd, fd],
          // Own process group: a Ctrl-C in the terminal reaches only the CLI, which stops the
          // children in order (actors first, then nats-server) instead of all at once.
          detached: true,
        });
        liveChildren.add(child);
        child.once("exit", () => liveChildren.delete(child));
        return child;
      } finally {
        closeSync(fd);
      }
    };

    for (const spec of specs) {
      const logFile = join(logsDir, `${spec.name}.log`);
      log(`starting ${spec.name} (log: ${logFile})`);
      processes.push({ ...spec, logFile, child: spawnChild(spec, logFile) });
    }
    await waitReady(nc, processes, readyTimeoutMs);
    log("all processes ready");

    const byName = (name: string): StackProcess => {
      const proc = processes.find((p) => p.name === name);
      if (!proc) throw new FerryError(ErrorCode.NotFound, `no process ${name} in the stack (have: ${processes.map((p) => p.name).join(", ")})`);
      return proc;
    };
    const connection = nc;
    return {
      natsUrl,
      workdir,
      hypervisorId,
      repositoryId,
      repositoryPath,
      nats,
      processes,
      process: byName,
      stopProcess: (name, signal) => stopChild(byName(name), signal),
      startProcess: async (name) => {
        const proc = byName(name);
        if (isRunning(proc.child)) return;
        proc.child = spawnChild(proc, proc.logFile);
        await waitReady(connection, [proc], readyTimeoutMs);
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
}

/**
 * Waits until every process answers `$SRV.PING` under its service name with its id. Fails fast
 * when a process exits, and names the process and its log file either way.
 */
async function waitReady(nc: NatsConnection, processes: readonly StackProcess[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const pending = new Set(processes);
  while (pending.size > 0) {
    for (const proc of pending) {
      if (!isRunning(proc.child)) {
        const how = proc.child.exitCode !== null ? `exited with code ${proc.child.exitCode}` : `was killed by ${proc.child.signalCode}`;
        throw new FerryError(ErrorCode.Unavailable, `${proc.name} ${how} before it was ready; see ${proc.logFile}`, { retryable: false });
      }
    }
    const names = new Set([...pending].map((p) => p.serviceName));
    const answered = new Map<ServiceName, Set<string>>();
    await Promise.all([...names].map(async (name) => answered.set(name, await pingIds(nc, name))));
    for (const proc of [...pending]) {
      if (answered.get(proc.serviceName)?.has(proc.id)) pending.delete(proc);
    }
    if (pending.size === 0) return;
    if (Date.now() > deadline) {
      const waiting = [...pending].map((p) => `${p.name} (log: ${p.logFile})`).join(", ");
      throw new FerryError(ErrorCode.Timeout, `not ready within ${timeoutMs} ms: ${waiting}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
