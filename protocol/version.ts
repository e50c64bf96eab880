/**
 * Ferry's wire protocol version. Every message body and every record stored in JetStream
 * carries it as `v`; a receiver rejects a version it does not know with `unsupported_version`.
 * Bump it only for incompatible changes; adding an optional field is compatible.
 */
export const PROTOCOL_VERSION = 1 as const;
export const SUPPORTED_PROTOCOL_VERSIONS: readonly number[] = [PROTOCOL_VERSION];

/** Every subject Ferry uses starts with this token, so a NATS account can be shared. */
export const SUBJECT_ROOT = "ferry" as const;
