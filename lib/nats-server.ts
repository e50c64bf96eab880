import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, openSync, closeSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { ErrorCode, FerryError } from "../protocol/mod.js";
import { MIN_NATS_SERVER_VERSION, compareVersions } from "./nats.js";
import { projectRoot } from "./paths.js";

const execFileAsync = promisify(execFile);

export interface NatsServerBinary {
  path: string;
  version: string;
}

const HOW_TO_INSTALL =
  "Ferry needs nats-server >= " +
  MIN_NATS_SERVER_VERSION +
  ". On Debian/Ubuntu run `bash scripts/fetch-nats-server.sh` (it unpacks Debian trixie's package into .tools/ without touching the system); " +
  "elsewhere download a release from the NATS project and set NATS_SERVER_BIN to its path.";

async function versionOf(path: string): Promise<string | undefined> {
  try {
    const { stdout } = await execFileAsync(path, ["--version"], { timeout: 5_000 });
    return /v?(\d+\.\d+\.\d+)/.exec(stdout)?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Finds a nats-server >= 2.10: `NATS_SERVER_BIN`, then the project's `.tools/`, then PATH.
 * Throws a FerryError saying how to get one when none fits.
 */
export async function findNatsServerBinary(): Promise<NatsServerBinary> {
  const candidates: string[] = [];
  if (process.env.NATS_SERVER_BIN) candidates.push(process.env.NATS_SERVER_BIN);
  candidates.push(join(projectRoot(), ".tools", "usr", "sbin", "nats-server"));
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir) candidates.push(join(dir, "nats-server"));
  }
  const rejected: string[] = [];
  for (const path of candidates) {
    if (!existsSync(path)) continue;
    const version = await versionOf(path);
    if (version && compareVersions(version, MIN_NATS_SERVER_VERSION) >= 0) return { path, version };
    rejected.push(`${path} (${version ?? "unknown version"})`);
  }
  throw new FerryError(
    ErrorCode.Unavailable,
    `no suitable nats-server found${rejected.length ? `; too old: ${rejected.join(", ")}` : ""}. ${HOW_TO_INSTALL}`,
    { retryable: false },
  );
}

/** A free TCP port on loopback (the OS picks; a tiny race remains, acceptable for tests). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

async function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ port, host: "127.0.0.1" });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export interface NatsServerOptions {
  /** Folder for the config, JetStream store and log. Created if missing. */
  dir: string;
  serverName?: string;
  /** Client port; 0 lets the server choose (kept across restarts). */
  port?: number;
  /** `always` fsyncs every JetStream write before acknowledging it (the default). */
  syncInterval?: "always" | string;
  maxPayloadBytes?: number;
  cluster?: { name: string; port: number; routes: number[] };
  binary?: NatsServerBinary;
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** One nats-server process with JetStream; can be stopped, killed, paused and restarted. */
export class NatsServer {
  private child?: ChildProcess;
  private constructor(
    readonly opts: NatsServerOptions,
    readonly binary: NatsServerBinary,
    private _port: number,
  ) {}

  static async start(opts: NatsServerOptions): Promise<NatsServer> {
    const binary = opts.binary ?? (await findNatsServerBinary());
    const server = new NatsServer(opts, binary, opts.port ?? 0);
    await server.launch();
    return server;
  }

  get port(): number {
    return this._port;
  }
  get url(): string {
    return `nats://127.0.0.1:${this._port}`;
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }
  get logFile(): string {
    return join(this.opts.dir, "nats-server.log");
  }

  private writeConfig(): string {
    const { dir } = this.opts;
    const portsDir = join(dir, "ports");
    mkdirSync(join(dir, "jetstream"), { recursive: true });
    mkdirSync(portsDir, { recursive: true });
    const lines = [
      `server_name: ${JSON.stringify(this.opts.serverName ?? "ferry")}`,
      `listen: "127.0.0.1:${this._port === 0 ? -1 : this._port}"`,
      `ports_file_dir: ${JSON.stringify(portsDir)}`,
      `max_payload: ${this.opts.maxPayloadBytes ?? 1024 * 1024}`,
      `jetstream {`,
      `  store_dir: ${JSON.stringify(join(dir, "jetstream"))}`,
      `  sync_interval: ${this.opts.syncInterval ?? "always"}`,
      `}`,
    ];
    const cluster = this.opts.cluster;
    if (cluster) {
      lines.push(
        `cluster {`,
        `  name: ${JSON.stringify(cluster.name)}`,
        `  listen: "127.0.0.1:${cluster.port}"`,
        `  routes: [${cluster.routes.map((p) => JSON.stringify(`nats-route://127.0.0.1:${p}`)).join(", ")}]`,
        `}`,
      );
    }
    const configPath = join(dir, "nats.conf");
    writeFileSync(configPath, lines.join("\n") + "\n");
    return configPath;
  }

  private async launch(): Promise<void> {
    mkdirSync(this.opts.dir, { recursive: true });
    const configPath = this.writeConfig();
    const portsDir = join(this.opts.dir, "ports");
    const logFd = openSync(this.logFile, "a");
    // Its own process group: a terminal's Ctrl-C reaches the actors first, and the server goes last.
    const child = spawn(this.binary.path, ["-c", configPath], { stdio: ["ignore", logFd, logFd], detached: true });
    closeSync(logFd);
    this.child = child;
    running.add(child);
    child.once("exit", () => running.delete(child));

    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) {
        throw new FerryError(ErrorCode.Unavailable, `nats-server exited with ${child.exitCode}; see ${this.logFile}`);
      }
      if (this._port === 0) {
        const portsFile = readdirSync(portsDir).find((f) => f === `nats-server_${child.pid}.ports`);
        if (portsFile) {
          try {
            const ports = JSON.parse(readFileSync(join(portsDir, portsFile), "utf8")) as { nats?: string[] };
            const url = ports.nats?.[0];
            if (url) this._port = Number(new URL(url).port);
          } catch {
            // written but not complete yet
          }
        }
      }
      if (this._port !== 0 && (await portAccepts(this._port))) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    child.kill("SIGKILL");
    throw new FerryError(ErrorCode.Timeout, `nats-server did not start within 15 s; see ${this.logFile}`);
  }

  private async waitExit(timeoutMs: number): Promise<boolean> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      child.once("exit", () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Graceful stop (SIGTERM), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    if (!this.child) return;
    this.child.kill("SIGCONT");
    this.child.kill("SIGTERM");
    if (!(await this.waitExit(10_000))) {
      this.child.kill("SIGKILL");
      await this.waitExit(5_000);
    }
  }

  /** Abrupt death, as in a crash or power loss of the process. */
  async kill(): Promise<void> {
    this.child?.kill("SIGKILL");
    await this.waitExit(5_000);
  }

  pause(): void {
    this.child?.kill("SIGSTOP");
  }
  resume(): void {
    this.child?.kill("SIGCONT");
  }

  /** Starts again on the same port with the same store. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }
}

/** A cluster of nats-server processes on loopback, each with its own JetStream store. */
export class NatsCluster {
  private constructor(readonly servers: NatsServer[]) {}

  static async start(opts: { dir: string; size?: number; name?: string }): Promise<NatsCluster> {
    const size = opts.size ?? 3;
    const binary = await findNatsServerBinary();
    const clientPorts = await Promise.all(Array.from({ length: size }, () => freePort()));
    const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()));
    const servers = await Promise.all(
      clientPorts.map((port, i) =>
        NatsServer.start({
          dir: join(opts.dir, `n${i + 1}`),
          serverName: `n${i + 1}`,
          port,
          binary,
          cluster: { name: opts.name ?? "ferry", port: routePorts[i]!, routes: routePorts.filter((_, j) => j !== i) },
        }),
      ),
    );
    return new NatsCluster(servers);
  }

  /** Comma-separated client URLs, as NATS_URL takes them. */
  get url(): string {
    return this.servers.map((s) => s.url).join(",");
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
  }
}
