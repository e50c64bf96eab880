import { Packr } from "msgpackr";
import { z } from "zod";
import { ErrorCode, FerryError, WireErrorSchema, type WireError } from "./errors.js";
import { PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from "./version.js";

// Records off: every message decodes as a plain map any msgpack implementation can read.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: "number" });

/** A message type: its versioned type id and the schema its body must satisfy. */
export interface MessageDef<TType extends string = string, TShape extends z.ZodRawShape = z.ZodRawShape> {
  readonly type: TType;
  readonly schema: z.ZodObject<TShape & { v: z.ZodLiteral<typeof PROTOCOL_VERSION>; type: z.ZodLiteral<TType> }>;
}

/** The body a sender passes (defaults may be left out); `v` and `type` are added by `encode`. */
export type BodyIn<M extends MessageDef> = Omit<z.input<M["schema"]>, "v" | "type">;
/** A decoded, validated message. */
export type Msg<M extends MessageDef> = z.output<M["schema"]>;

/** Defines a message type once: the schema validated at the receiver, from which its TS type derives. */
export function defineMessage<const TType extends string, TShape extends z.ZodRawShape>(
  type: TType,
  shape: TShape,
): MessageDef<TType, TShape> {
  const schema = z.object({ ...shape, v: z.literal(PROTOCOL_VERSION), type: z.literal(type) });
  return { type, schema } as unknown as MessageDef<TType, TShape>;
}

export function packValue(value: unknown): Buffer {
  return packr.pack(value);
}

export function unpackValue(data: Uint8Array): unknown {
  try {
    return packr.unpack(data);
  } catch (err) {
    throw new FerryError(ErrorCode.BadRequest, `undecodable message: ${(err as Error).message}`);
  }
}

export function encode<M extends MessageDef>(def: M, body: BodyIn<M>): Buffer {
  return packr.pack({ ...(body as object), v: PROTOCOL_VERSION, type: def.type });
}

/** Describes zod issues as `field a.b: reason; ...` so an operator can find the field. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 8)
    .map((issue) => `${issue.path.length > 0 ? `field ${issue.path.join(".")}` : "message"}: ${issue.message}`)
    .join("; ");
}

/** Checks the envelope (`v`, `type`) and the schema of an already-unpacked value. */
export function validate<M extends MessageDef>(def: M, raw: unknown): Msg<M> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new FerryError(ErrorCode.BadRequest, `expected a ${def.type} message, got ${raw === null ? "null" : typeof raw}`);
  }
  const envelope = raw as { v?: unknown; type?: unknown };
  if (typeof envelope.v !== "number" || typeof envelope.type !== "string") {
    throw new FerryError(ErrorCode.BadRequest, `not a Ferry message: expected a map with a numeric \`v\` and a \`type\` (${def.type})`);
  }
  if (!SUPPORTED_PROTOCOL_VERSIONS.includes(envelope.v)) {
    throw new FerryError(
      ErrorCode.UnsupportedVersion,
      `message version ${String(envelope.v)} is not supported (supported: ${SUPPORTED_PROTOCOL_VERSIONS.join(", ")})`,
      { retryable: false },
    );
  }
  if (envelope.type !== def.type) {
    throw new FerryError(ErrorCode.BadRequest, `expected message type ${def.type}, got ${String(envelope.type)}`);
  }
  const parsed = def.schema.safeParse(raw);
  if (!parsed.success) {
    throw new FerryError(ErrorCode.BadRequest, `invalid ${def.type}: ${describeIssues(parsed.error)}`);
  }
  return parsed.data as Msg<M>;
}

export function decode<M extends MessageDef>(def: M, data: Uint8Array): Msg<M> {
  return validate(def, unpackValue(data));
}

/** The reply every service sends instead of its normal response when a request fails. */
export const ErrorReply = defineMessage("error", { error: WireErrorSchema });

export function encodeError(error: WireError): Buffer {
  return encode(ErrorReply, { error });
}

/**
 * Decodes a reply that is either `def` or an ErrorReply; an ErrorReply is thrown as FerryError.
 */
export function decodeReply<M extends MessageDef>(def: M, data: Uint8Array): Msg<M> {
  const raw = unpackValue(data);
  if (raw !== null && typeof raw === "object" && (raw as { type?: unknown }).type === ErrorReply.type) {
    throw FerryError.fromWire(validate(ErrorReply, raw).error);
  }
  return validate(def, raw);
}
