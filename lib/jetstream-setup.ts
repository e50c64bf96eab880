import { nanos, type NatsConnection } from "@nats-io/nats-core";
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import {
  Buckets,
  Consumers,
  EVENT_MAX_AGE_MS,
  Streams,
  TRIGGER_DEDUP_WINDOW_MS,
  eventSubjects,
  triggerSubjects,
} from "../protocol/mod.js";

export interface JetStreamSetupOptions {
  /** 1 on a single server, 3 on a cluster. FERRY_JS_REPLICAS overrides the default of 1. */
  replicas?: number;
}

function replicasFrom(opts: JetStreamSetupOptions): number {
  return opts.replicas ?? (Number(process.env.FERRY_JS_REPLICAS) || 1);
}

async function ensureStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    await jsm.streams.info(config.name);
    await jsm.streams.update(config.name, config);
  } catch (err) {
    if ((err as { name?: string }).name !== "StreamNotFoundError" && !/stream not found/i.test(String(err))) throw err;
    await jsm.streams.add(config);
  }
}

/**
 * Creates Ferry's JetStream state if missing and brings its settings up to date; safe to run from
 * every process at every start.
 */
export async function ensureJetStreamResources(nc: NatsConnection, opts: JetStreamSetupOptions = {}): Promise<void> {
  const replicas = replicasFrom(opts);
  const jsm = await jetstreamManager(nc);

  await ensureStream(jsm, {
    name: Streams.triggers,
    subjects: [triggerSubjects.all()],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: replicas,
    duplicate_window: nanos(TRIGGER_DEDUP_WINDOW_MS),
    max_age: nanos(30 * 24 * 60 * 60 * 1000),
    max_msg_size: 256 * 1024,
    discard: DiscardPolicy.Old,
  });
  await ensureStream(jsm, {
    name: Streams.events,
    subjects: [eventSubjects.all()],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: replicas,
    max_age: nanos(EVENT_MAX_AGE_MS),
    max_bytes: 1024 * 1024 * 1024,
    max_msg_size: 512 * 1024,
    discard: DiscardPolicy.Old,
  });

  const consumer = {
    durable_name: Consumers.manager,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(60_000),
    // Unlimited: a trigger the manager could not take yet (KV unreachable, draining) is never
    // dropped; one that can never run is terminated by the manager and reported.
    max_deliver: -1,
    max_ack_pending: 64,
    filter_subject: triggerSubjects.all(),
  };
  try {
    await jsm.consumers.info(Streams.triggers, Consumers.manager);
  } catch {
    await jsm.consumers.add(Streams.triggers, consumer);
  }

  const kvm = new Kvm(nc);
  await kvm.create(Buckets.config, { history: 5, replicas, storage: StorageType.File });
  await kvm.create(Buckets.sessions, { history: 5, replicas, storage: StorageType.File, max_bytes: 1024 * 1024 * 1024 });
}

export async function openBucket(nc: NatsConnection, bucket: (typeof Buckets)[keyof typeof Buckets]): Promise<KV> {
  return new Kvm(nc).open(bucket);
}
