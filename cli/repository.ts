import type { NatsConnection } from "@nats-io/nats-core";
import {
  GetRestorePointRequest,
  GetRestorePointResponse,
  ListRestorePointsRequest,
  ListRestorePointsResponse,
  repositorySubjects,
  type RestorePoint,
} from "../protocol/mod.js";
import { request } from "../lib/rpc.js";

/** The repository catalog, asked of whichever target mover serves the repository (never its files). */

export async function listRestorePoints(nc: NatsConnection, repositoryId: string, filter: { jobId?: string; vmId?: string } = {}): Promise<RestorePoint[]> {
  const res = await request(nc, repositorySubjects.list(repositoryId), ListRestorePointsRequest, filter, ListRestorePointsResponse, { timeoutMs: 15_000 });
  return res.restorePoints;
}

export async function getRestorePoint(nc: NatsConnection, repositoryId: string, restorePointId: string): Promise<RestorePoint> {
  const res = await request(nc, repositorySubjects.get(repositoryId), GetRestorePointRequest, { restorePointId }, GetRestorePointResponse, { timeoutMs: 15_000 });
  return res.restorePoint;
}
