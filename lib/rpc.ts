import { errors, type NatsConnection } from "@nats-io/nats-core";
import type { Service, ServiceMsg } from "@nats-io/services";
import {
  ErrorCode,
  FerryError,
  decode,
  decodeReply,
  encode,
  encodeError,
  type BodyIn,
  type MessageDef,
  type Msg,
} from "../protocol/mod.js";
import type { Logger } from "./log.js";

/** Sends a request and decodes the reply; an error reply or a transport failure throws FerryError. */
export async function request<Req extends MessageDef, Res extends MessageDef>(
  nc: NatsConnection,
  subject: string,
  reqDef: Req,
  body: BodyIn<Req>,
  resDef: Res,
  opts: { timeoutMs?: number } = {},
): Promise<Msg<Res>> {
  const timeout = opts.timeoutMs ?? 10_000;
  let reply;
  try {
    reply = await nc.request(subject, encode(reqDef, body), { timeout });
  } catch (err) {
    throw transportError(err, subject, timeout);
  }
  return decodeReply(resDef, reply.data);
}

function transportError(err: unknown, subject: string, timeout: number): FerryError {
  if (err instanceof errors.NoRespondersError || (err as Error)?.cause instanceof errors.NoRespondersError) {
    return new FerryError(ErrorCode.Unavailable, `nobody serves ${subject}`, { cause: err });
  }
  if (err instanceof errors.TimeoutError || (err as Error)?.cause instanceof errors.TimeoutError) {
    return new FerryError(ErrorCode.Timeout, `no reply on ${subject} within ${timeout} ms`, { cause: err });
  }
  if (err instanceof errors.RequestError && /no responders/i.test(err.message)) {
    return new FerryError(ErrorCode.Unavailable, `nobody serves ${subject}`, { cause: err });
  }
  return FerryError.from(err, ErrorCode.Unavailable);
}

/** The services API wants a numeric code on error replies; these follow HTTP's meaning. */
const SERVICE_ERROR_STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  unsupported_version: 400,
  not_found: 404,
  conflict: 409,
  corrupt: 422,
  canceled: 499,
  internal: 500,
  io: 500,
  unavailable: 503,
  timeout: 504,
};

export interface EndpointContext {
  msg: ServiceMsg;
  subject: string;
}

export interface EndpointSpec<Req extends MessageDef, Res extends MessageDef> {
  /** Endpoint name shown by `$SRV.INFO`. */
  name: string;
  subject: string;
  request: Req;
  response: Res;
  handler: (req: Msg<Req>, ctx: EndpointContext) => Promise<BodyIn<Res>>;
  /** Queue group; "" for none (every instance receives). Defaults to the services API's "q". */
  queue?: string;
}

/**
 * Serves one request subject: decodes and validates each request, runs the handler, and answers.
 * Anything thrown becomes an error reply (code, message, retryable) and a log line; the
 * subscription keeps serving.
 */
export function serveEndpoint<Req extends MessageDef, Res extends MessageDef>(
  service: Service,
  log: Logger,
  spec: EndpointSpec<Req, Res>,
  hooks: { gate?: () => FerryError | undefined; track?: <T>(p: Promise<T>) => Promise<T> } = {},
): void {
  const handle = async (msg: ServiceMsg): Promise<void> => {
    try {
      const refusal = hooks.gate?.();
      if (refusal) throw refusal;
      const req = decode(spec.request, msg.data);
      const body = await spec.handler(req, { msg, subject: msg.subject });
      if (msg.reply) msg.respond(encode(spec.response, body));
    } catch (err) {
      const error = FerryError.from(err);
      const level = error.code === ErrorCode.Internal ? "error" : "warn";
      log[level]({ endpoint: spec.name, subject: msg.subject, code: error.code, err: error.message }, "request failed");
      if (msg.reply) msg.respondError(SERVICE_ERROR_STATUS[error.code], error.message, encodeError(error.toWire()));
    }
  };
  service.addEndpoint(spec.name, {
    subject: spec.subject,
    handler: (err, msg) => {
      if (err) {
        log.error({ endpoint: spec.name, err: err.message }, "endpoint subscription failed");
        return;
      }
      const work = handle(msg);
      void (hooks.track ? hooks.track(work) : work);
    },
    // The services API (3.0.0-25) falls back to its "q" group for an empty queue name, so "no
    // queue group" is a group of our own per instance: every instance then gets the request.
    ...(spec.queue === undefined ? {} : { queue: spec.queue === "" ? `solo-${service.info().id}` : spec.queue }),
  });
}
