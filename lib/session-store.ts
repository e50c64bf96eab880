import type { KV } from "@nats-io/kv";
import {
  ErrorCode,
  FerryError,
  SessionKeys,
  SessionRecord,
  decode,
  encode,
  type BodyIn,
  type Msg,
} from "../protocol/mod.js";

export type Session = Msg<typeof SessionRecord>;
export type SessionInput = BodyIn<typeof SessionRecord>;

export interface StoredSession {
  session: Session;
  revision: number;
}

/**
 * Session records in KV, changed only by compare-and-set: `update` re-reads and re-applies the
 * mutation when another writer got there first, so no update is ever blindly overwritten.
 */
export class SessionStore {
  constructor(private readonly kv: KV) {}

  /** Creates the record; throws `conflict` when the session already exists (a redelivered trigger). */
  async create(session: SessionInput): Promise<StoredSession> {
    const data = encode(SessionRecord, session);
    try {
      const revision = await this.kv.create(SessionKeys.session(session.id), data);
      return { session: decode(SessionRecord, data), revision };
    } catch (err) {
      if (/wrong last sequence|key exists/i.test(String((err as Error).message))) {
        throw new FerryError(ErrorCode.Conflict, `session ${session.id} already exists`, { retryable: false });
      }
      throw FerryError.from(err, ErrorCode.Unavailable);
    }
  }

  async get(sessionId: string): Promise<StoredSession | undefined> {
    const entry = await this.kv.get(SessionKeys.session(sessionId));
    if (!entry || entry.operation !== "PUT" || entry.value.length === 0) return undefined;
    return { session: decode(SessionRecord, entry.value), revision: entry.revision };
  }

  /**
   * Applies `mutate` to the latest record and writes it if the revision is unchanged; on a lost
   * race re-reads and tries again. `mutate` must be a pure function of the record it is given.
   */
  async update(sessionId: string, mutate: (session: Session) => void, attempts = 10): Promise<StoredSession> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.get(sessionId);
      if (!current) throw new FerryError(ErrorCode.NotFound, `session ${sessionId} not found`);
      const next = structuredClone(current.session);
      mutate(next);
      next.updatedAt = Date.now();
      const data = encode(SessionRecord, next);
      try {
        const revision = await this.kv.update(SessionKeys.session(sessionId), data, current.revision);
        return { session: decode(SessionRecord, data), revision };
      } catch (err) {
        const lost = /wrong last sequence/i.test(String((err as Error).message));
        if (!lost || attempt >= attempts) {
          throw lost
            ? new FerryError(ErrorCode.Conflict, `session ${sessionId}: ${attempts} compare-and-set attempts lost`)
            : FerryError.from(err, ErrorCode.Unavailable);
        }
      }
    }
  }

  async list(): Promise<Session[]> {
    const sessions: Session[] = [];
    const keys = await this.kv.keys(SessionKeys.all);
    for await (const key of keys) {
      const entry = await this.kv.get(key);
      if (entry && entry.operation === "PUT" && entry.value.length > 0) {
        try {
          sessions.push(decode(SessionRecord, entry.value));
        } catch {
          // A record this version cannot read (newer format) is skipped, not fatal for a listing.
        }
      }
    }
    return sessions.sort((a, b) => a.createdAt - b.createdAt);
  }

  /** Yields the record each time it changes, starting with the current one. */
  async *watch(sessionId: string, signal?: AbortSignal): AsyncGenerator<Session> {
    const watcher = await this.kv.watch({ key: SessionKeys.session(sessionId) });
    const stop = () => watcher.stop();
    signal?.addEventListener("abort", stop, { once: true });
    try {
      for await (const entry of watcher) {
        if (entry.operation === "PUT" && entry.value.length > 0) yield decode(SessionRecord, entry.value);
      }
    } finally {
      signal?.removeEventListener("abort", stop);
      watcher.stop();
    }
  }
}
