import { hostname, userInfo } from "node:os";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import type { Command } from "commander";
import { Buckets } from "../protocol/mod.js";
import { ConfigStore } from "../lib/config-store.js";
import { ensureJetStreamResources, openBucket } from "../lib/jetstream-setup.js";
import { connectNats, natsUrlFromEnv } from "../lib/nats.js";
import { SessionStore } from "../lib/session-store.js";

/** What a command needs to talk to Ferry: the connection, JetStream and the two stores. */
export interface CliContext {
  natsUrl: string;
  nc: NatsConnection;
  js: JetStreamClient;
  config: ConfigStore;
  sessions: SessionStore;
  close(): Promise<void>;
}

/** The NATS URL a command uses: the global `--nats`, else $NATS_URL, else the local default. */
export function natsUrlOf(cmd: Command): string {
  return natsUrlFromEnv(cmd.optsWithGlobals<{ nats?: string }>().nats);
}

/** The NATS server a stack command was pointed at explicitly (global --nats or $NATS_URL), if any. */
export function explicitNatsUrl(cmd: Command): string | undefined {
  return cmd.optsWithGlobals<{ nats?: string }>().nats ?? (process.env.NATS_URL || undefined);
}

/**
 * Connects to NATS and opens the stores. Creates Ferry's JetStream resources if they are missing,
 * so a command against a fresh server fails on the thing it asked for, not on a missing bucket.
 */
export async function openContext(natsUrl: string): Promise<CliContext> {
  const nc = await connectNats({ servers: natsUrl, name: `ferry-cli-${process.pid}` });
  try {
    await ensureJetStreamResources(nc);
    const [configKv, sessionsKv] = await Promise.all([openBucket(nc, Buckets.config), openBucket(nc, Buckets.sessions)]);
    return {
      natsUrl,
      nc,
      js: jetstream(nc),
      config: new ConfigStore(configKv),
      sessions: new SessionStore(sessionsKv),
      close: async () => {
        await nc.drain().catch(() => nc.close());
      },
    };
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw err;
  }
}

/** Opens a context for the command, runs `fn`, and always closes the connection. */
export async function withContext<T>(cmd: Command, fn: (ctx: CliContext) => Promise<T>): Promise<T> {
  const ctx = await openContext(natsUrlOf(cmd));
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

/** `user@host`, recorded in triggers as who asked. */
export function requestedBy(): string {
  let user = process.env.USER ?? "unknown";
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (containers): keep $USER
  }
  return `${user}@${hostname()}`.slice(0, 200);
}
