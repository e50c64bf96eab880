import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { ErrorCode, FerryError } from "../protocol/mod.js";

export const MIN_NATS_SERVER_VERSION = "2.10.0";
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

/** The NATS URL to use: the explicit one, else $NATS_URL, else the local default (empty counts as unset). */
export function natsUrlFromEnv(explicit?: string): string {
  return explicit || process.env.NATS_URL || DEFAULT_NATS_URL;
}

export function compareVersions(a: string, b: string): number {
  const pa = a.replace(/^v/, "").split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.replace(/^v/, "").split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Connects and refuses servers older than 2.10: Ferry relies on sync_interval, filter_subjects and
 * fixes for acknowledged-write loss that 2.9 lacks. Reconnects forever once connected.
 */
export async function connectNats(opts: { servers?: string; name: string }): Promise<NatsConnection> {
  const servers = natsUrlFromEnv(opts.servers);
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: servers.split(","),
      name: opts.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      pingInterval: 10_000,
    });
  } catch (err) {
    throw new FerryError(ErrorCode.Unavailable, `cannot connect to NATS at ${servers}: ${(err as Error).message}`, { cause: err });
  }
  const version = nc.info?.version ?? "0.0.0";
  if (compareVersions(version, MIN_NATS_SERVER_VERSION) < 0) {
    await nc.close();
    throw new FerryError(
      ErrorCode.Unavailable,
      `NATS server at ${servers} is ${version}; Ferry needs nats-server >= ${MIN_NATS_SERVER_VERSION} (run scripts/fetch-nats-server.sh, or set NATS_URL to a newer server)`,
      { retryable: false },
    );
  }
  return nc;
}

/** The largest message the connected server accepts. */
export function maxPayload(nc: NatsConnection): number {
  return nc.info?.max_payload ?? 1024 * 1024;
}
