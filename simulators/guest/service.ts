import type { Service } from "@nats-io/services";
import type { Logger } from "../../lib/log.js";
import { serveEndpoint } from "../../lib/rpc.js";
import {
  AgentFreezeRequest,
  AgentFreezeResponse,
  AgentInfoRequest,
  AgentInfoResponse,
  AgentThawRequest,
  AgentThawResponse,
  guestAgentSubjects,
} from "../../protocol/mod.js";
import type { ServeHooks } from "../hypervisor/service.js";
import type { GuestAgent } from "./agent.js";

/** Serves one VM's in-guest agent API, `ferry.agent.<vmId>.{info,freeze,thaw}`. */
export function serveGuestAgent(service: Service, agent: GuestAgent, log: Logger, hooks: ServeHooks = {}): void {
  const vmId = agent.vmId;
  serveEndpoint(service, log, {
    name: `${vmId}-info`,
    subject: guestAgentSubjects.info(vmId),
    request: AgentInfoRequest,
    response: AgentInfoResponse,
    handler: async () => agent.info(),
  }, hooks);
  serveEndpoint(service, log, {
    name: `${vmId}-freeze`,
    subject: guestAgentSubjects.freeze(vmId),
    request: AgentFreezeRequest,
    response: AgentFreezeResponse,
    handler: (req) => agent.freeze(req.freezeId, req.timeoutMs),
  }, hooks);
  serveEndpoint(service, log, {
    name: `${vmId}-thaw`,
    subject: guestAgentSubjects.thaw(vmId),
    request: AgentThawRequest,
    response: AgentThawResponse,
    handler: async (req) => agent.thaw(req.freezeId),
  }, hooks);
}
