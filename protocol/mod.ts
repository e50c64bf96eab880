/** Ferry's wire protocol: subjects, message schemas, codecs. The only code every actor shares. */
export * from "./version.js";
export * from "./errors.js";
export * from "./codec.js";
export * from "./common.js";
export * from "./subject.js";
export * from "./streams.js";
export * from "./services.js";
export * from "./config.js";
export * from "./job.js";
export * from "./session.js";
export * from "./scheduling.js";
export * from "./inventory.js";
export * from "./hypervisor.js";
export * from "./guest.js";
export * from "./movers.js";
export * from "./datachannel.js";
