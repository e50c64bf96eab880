/**
 * JetStream resources Ferry creates idempotently at start-up (see lib/jetstream-setup).
 * Names are fixed so every role's permissions can name them.
 */
export const Buckets = {
  /** The configuration database: jobs, proxies, repositories, hypervisors. */
  config: "ferry-config",
  /** Session state, one key per session, updated only with compare-and-set. */
  sessions: "ferry-sessions",
} as const;

export const Streams = {
  /** Job triggers and operator requests (restore, verify); read by managers via a durable consumer. */
  triggers: "FERRY_TRIGGERS",
  /** Session, task and actor events. */
  events: "FERRY_EVENTS",
} as const;

export const Consumers = {
  /** The durable consumer all managers share: a trigger is processed by exactly one of them. */
  manager: "ferry-manager",
} as const;

/** How long JetStream remembers a trigger's idempotency key (Nats-Msg-Id). */
export const TRIGGER_DEDUP_WINDOW_MS = 24 * 60 * 60 * 1000;
/** How long events are kept. */
export const EVENT_MAX_AGE_MS = 14 * 24 * 60 * 60 * 1000;
