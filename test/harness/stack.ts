import { createHash } from "node:crypto";
import { createReadStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { startStack, type Stack, type StackOptions } from "../../cli/stack.js";
import { ConfigStore } from "../../lib/config-store.js";
import { openBucket } from "../../lib/jetstream-setup.js";
import { connectNats } from "../../lib/nats.js";
import { request } from "../../lib/rpc.js";
import { SessionStore, type Session } from "../../lib/session-store.js";
import {
  Buckets,
  GetRestorePointRequest,
  GetRestorePointResponse,
  JobSpec,
  JobTrigger,
  RepositoryInfoRequest,
  RepositoryInfoResponse,
  RestoreRequest,
  SessionKind,
  SimSnapshotImagesRequest,
  SimSnapshotImagesResponse,
  SimStatusRequest,
  SimStatusResponse,
  SimVerb,
  SimWorkloadRequest,
  SimWorkloadResponse,
  VerifyRequest,
  encode,
  hypervisorSubjects,
  msgIdFor,
  repositorySubjects,
  sessionIdFor,
  triggerSubjects,
  type JobSpecInput,
  type Msg,
  type RestorePoint,
} from "../../protocol/mod.js";
import { blockKindAt, type ContentSpec } from "../../simulators/content.js";
import type { SimulatorConfig } from "../../simulators/config.js";

/**
 * End-to-end test wrapper around the embedded stack (cli/stack.ts): a private nats-server on a
 * free port, the simulator and every actor as child processes running `node dist/cli/main.js`.
 * Tests drive it only through NATS: triggers on JetStream, session records from the sessions KV,
 * requests to the services. Needs `npm run build` first (the stack says so when dist/ is missing).
 */

export const MiB = 1024 * 1024;

export interface E2EStackOptions extends Partial<Omit<StackOptions, "workdir" | "simulatorConfig">> {
  /** Prefix of the temporary work folder. */
  name: string;
  /** The simulator's config for a datastore folder under the work folder. */
  simulatorConfig: (dir: string) => SimulatorConfig;
}

export interface Triggered {
  sessionId: string;
  requestId: string;
  /** JetStream already had this Nats-Msg-Id. */
  duplicate: boolean;
}

export interface E2EStack {
  readonly stack: Stack;
  readonly workdir: string;
  readonly simulatorConfig: SimulatorConfig;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly config: ConfigStore;
  readonly sessions: SessionStore;
  putJob(spec: JobSpecInput): Promise<JobSpec>;
  /** Publishes a JobTrigger through JetStream with its Nats-Msg-Id, as the CLI does. */
  triggerJob(jobId: string, opts?: { requestId?: string; requestedAt?: number }): Promise<Triggered>;
  /** Watches the session record until it is completed; fails with the last record seen on timeout. */
  waitSession(sessionId: string, timeoutMs?: number): Promise<Session>;
  /** Triggers the job and waits for its session to complete. */
  runJob(jobId: string, timeoutMs?: number): Promise<Session>;
  restoreToFiles(rp: RestorePoint, dir: string, timeoutMs?: number): Promise<{ session: Session; files: Map<string, string> }>;
  verify(rp: RestorePoint, timeoutMs?: number): Promise<Session>;
  restorePoint(restorePointId: string): Promise<RestorePoint>;
  repositoryInfo(): Promise<Msg<typeof RepositoryInfoResponse>>;
  simStatus(): Promise<Msg<typeof SimStatusResponse>>;
  setWorkload(vmId: string, bytesPerSec: number, ioSizeBytes?: number): Promise<void>;
  snapshotImages(vmId: string, snapshotId: string): Promise<Map<string, string>>;
  /** Stops the stack and removes the work folder (kept when FERRY_E2E_KEEP=1). */
  stop(): Promise<void>;
}

let requestCounter = 0;
export function uniqueRequestId(prefix = "e2e"): string {
  return `${prefix}-${process.pid}-${Date.now()}-${++requestCounter}`;
}

export async function startE2EStack(opts: E2EStackOptions): Promise<E2EStack> {
  const { name, simulatorConfig: makeConfig, ...stackOpts } = opts;
  const workdir = mkdtempSync(join(tmpdir(), `ferry-e2e-${name}-`));
  const simulatorConfig = makeConfig(join(workdir, "hypervisor"));
  // A stack that fails to start stops its processes and names their logs, which stay in workdir.
  const stack: Stack = await startStack({ workdir, simulatorConfig, ...stackOpts });
  let nc: NatsConnection;
  let configKv, sessionsKv;
  try {
    nc = await connectNats({ servers: stack.natsUrl, name: `ferry-e2e-${name}` });
    [configKv, sessionsKv] = await Promise.all([openBucket(nc, Buckets.config), openBucket(nc, Buckets.sessions)]);
  } catch (err) {
    await stack.stop();
    throw err;
  }
  const js = jetstream(nc);
  const config = new ConfigStore(configKv);
  const sessions = new SessionStore(sessionsKv);
  const hv = simulatorConfig.hypervisorId;
  const repo = stack.repositoryId;

  const waitSession = async (sessionId: string, timeoutMs = 60_000): Promise<Session> => {
    const abort = new AbortController();
    let last: Session | undefined;
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      for await (const session of sessions.watch(sessionId, abort.signal)) {
        last = session;
        if (session.state === "completed") return session;
      }
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
    const seen = last ? `state ${last.state}, tasks ${last.tasks.map((t) => `${t.vmId}/${t.diskId}:${t.state}`).join(", ")}` : "no record at all";
    throw new Error(`session ${sessionId} did not complete within ${timeoutMs} ms (${seen}); logs in ${join(workdir, "logs")}`);
  };

  const publishRequest = async (kind: SessionKind, subject: string, data: Uint8Array, requestId: string, requestedAt: number): Promise<Triggered> => {
    const ack = await js.publish(subject, data, { msgID: msgIdFor(kind, requestId) });
    return { sessionId: sessionIdFor(kind, requestId, requestedAt), requestId, duplicate: ack.duplicate };
  };

  const e2e: E2EStack = {
    stack,
    workdir,
    simulatorConfig,
    nc,
    js,
    config,
    sessions,
    async putJob(input) {
      const job = JobSpec.parse(input);
      await config.putJob({ job, createdAt: Date.now(), updatedAt: Date.now() });
      return job;
    },
    async triggerJob(jobId, o = {}) {
      const requestId = o.requestId ?? uniqueRequestId();
      const requestedAt = o.requestedAt ?? Date.now();
      const data = encode(JobTrigger, { jobId, requestId, requestedBy: "e2e-test", requestedAt });
      return publishRequest(SessionKind.Backup, triggerSubjects.job(jobId), data, requestId, requestedAt);
    },
    waitSession,
    async runJob(jobId, timeoutMs) {
      const t = await e2e.triggerJob(jobId);
      return waitSession(t.sessionId, timeoutMs);
    },
    async restoreToFiles(rp, dir, timeoutMs) {
      const files = new Map(rp.disks.map((d) => [d.diskId, join(dir, `${rp.vm.id}_${rp.id}_${d.diskId}.raw`)]));
      const requestId = uniqueRequestId("restore");
      const requestedAt = Date.now();
      const data = encode(RestoreRequest, {
        requestId,
        requestedBy: "e2e-test",
        requestedAt,
        repositoryId: rp.repositoryId,
        restorePointId: rp.id,
        target: { kind: "files", disks: [...files].map(([diskId, path]) => ({ diskId, path })), overwrite: false },
        proxies: [],
      });
      const t = await publishRequest(SessionKind.Restore, triggerSubjects.restore(), data, requestId, requestedAt);
      return { session: await waitSession(t.sessionId, timeoutMs), files };
    },
    async verify(rp, timeoutMs) {
      const requestId = uniqueRequestId("verify");
      const requestedAt = Date.now();
      const data = encode(VerifyRequest, { requestId, requestedBy: "e2e-test", requestedAt, repositoryId: rp.repositoryId, restorePointId: rp.id });
      const t = await publishRequest(SessionKind.Verify, triggerSubjects.verify(), data, requestId, requestedAt);
      return waitSession(t.sessionId, timeoutMs);
    },
    async restorePoint(restorePointId) {
      const res = await request(nc, repositorySubjects.get(repo), GetRestorePointRequest, { restorePointId }, GetRestorePointResponse);
      return res.restorePoint;
    },
    repositoryInfo: () => request(nc, repositorySubjects.info(repo), RepositoryInfoRequest, {}, RepositoryInfoResponse),
    simStatus: () => request(nc, hypervisorSubjects.sim(hv, SimVerb.status), SimStatusRequest, {}, SimStatusResponse),
    async setWorkload(vmId, bytesPerSec, ioSizeBytes = 64 * 1024) {
      await request(nc, hypervisorSubjects.sim(hv, SimVerb.workload), SimWorkloadRequest, { vmId, bytesPerSec, ioSizeBytes }, SimWorkloadResponse);
    },
    async snapshotImages(vmId, snapshotId) {
      const res = await request(nc, hypervisorSubjects.sim(hv, SimVerb.snapshotImages), SimSnapshotImagesRequest, { vmId, snapshotId }, SimSnapshotImagesResponse);
      return new Map(res.images.map((i) => [i.diskId, i.path]));
    },
    async stop() {
      await nc.close().catch(() => undefined);
      await stack.stop();
      if (process.env.FERRY_E2E_KEEP !== "1") rmSync(workdir, { recursive: true, force: true });
    },
  };
  return e2e;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** The generated content spec of a disk in the simulator's config. */
export function contentSpecOf(config: SimulatorConfig, vmId: string, diskId: string): { spec: ContentSpec; sizeBytes: number } {
  const disk = config.vms.find((v) => v.id === vmId)?.disks.find((d) => d.id === diskId);
  if (!disk || disk.content.kind !== "generated" || disk.sizeBytes === undefined) throw new Error(`${vmId}/${diskId} is not a generated disk`);
  const { seed, zeroPct, compressiblePct, randomPct } = disk.content;
  return { spec: { seed, zeroPct, compressiblePct, randomPct }, sizeBytes: disk.sizeBytes };
}

/** How many blocks of each kind the generator put in an image, from `blockKindAt` alone. */
export function blockCounts(spec: ContentSpec, sizeBytes: number, blockSize = MiB): { zero: number; compressible: number; random: number; total: number } {
  const counts = { zero: 0, compressible: 0, random: 0, total: Math.ceil(sizeBytes / blockSize) };
  for (let i = 0; i < counts.total; i++) counts[blockKindAt(spec, i)]++;
  return counts;
}
