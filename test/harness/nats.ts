import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NatsCluster, NatsServer } from "../../lib/nats-server.js";

/**
 * Starts a private nats-server (JetStream in a temp dir, free port) for one test file. Never the
 * shared 4222 instance. A missing or too old binary fails with instructions, never a skip.
 */
export async function startTestNats(opts: { maxPayloadBytes?: number } = {}): Promise<{ server: NatsServer; url: string; dir: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-nats-"));
  const server = await NatsServer.start({ dir, ...opts });
  return {
    server,
    url: server.url,
    dir,
    stop: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startTestCluster(size = 3): Promise<{ cluster: NatsCluster; url: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-cluster-"));
  const cluster = await NatsCluster.start({ dir, size });
  return {
    cluster,
    url: cluster.url,
    stop: async () => {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
