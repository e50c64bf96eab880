/**
 * Names under which actors register with the NATS services API, so `$SRV.PING.<name>`,
 * `$SRV.INFO.<name>` and `$SRV.STATS.<name>` reach every instance of a role.
 */
export const ServiceName = {
  manager: "ferry-manager",
  scheduler: "ferry-scheduler",
  broker: "ferry-broker",
  guestProcessor: "ferry-guest-processor",
  sourceMover: "ferry-source-mover",
  targetMover: "ferry-target-mover",
  hypervisorSimulator: "ferry-hypervisor-simulator",
  guestSimulator: "ferry-guest-simulator",
} as const;
export type ServiceName = (typeof ServiceName)[keyof typeof ServiceName];

/** The actor roles, as named on the command line (`ferry actor <role>`). */
export const ActorRole = {
  manager: "manager",
  scheduler: "scheduler",
  broker: "broker",
  guestProcessor: "guest-processor",
  sourceMover: "source-mover",
  targetMover: "target-mover",
} as const;
export type ActorRole = (typeof ActorRole)[keyof typeof ActorRole];

export const SERVICE_NAME_OF_ROLE: Record<ActorRole, ServiceName> = {
  manager: ServiceName.manager,
  scheduler: ServiceName.scheduler,
  broker: ServiceName.broker,
  "guest-processor": ServiceName.guestProcessor,
  "source-mover": ServiceName.sourceMover,
  "target-mover": ServiceName.targetMover,
};
