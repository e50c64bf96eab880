import { describe, expect, it } from "vitest";
import { MOVER_MALLOC_ENV, stackProcessSpecs } from "../../cli/stack.js";
import { ServiceName } from "../../protocol/mod.js";

const specs = stackProcessSpecs({
  simulatorConfigPath: "/w/simulator.json",
  hypervisorId: "sim-1",
  proxies: 2,
  proxySlots: 3,
  repositoryId: "repo-1",
  repositoryPath: "/w/repository",
  repositorySlots: 4,
  managerConcurrency: 2,
});

describe("the embedded stack's processes", () => {
  it("are the simulator, one of each control actor, N proxies and one target mover", () => {
    expect(specs.map((s) => s.name)).toEqual(["simulator", "scheduler", "broker", "guest-processor", "proxy-1", "proxy-2", "repo-1-mover", "manager"]);
  });

  it("start each actor as `actor <role> --id <id>` and wait for it under its role's service name", () => {
    const proxy = specs.find((s) => s.name === "proxy-2")!;
    expect(proxy.args).toEqual(["actor", "source-mover", "--id", "proxy-2", "--slots", "3"]);
    expect(proxy.serviceName).toBe(ServiceName.sourceMover);
    const manager = specs.find((s) => s.name === "manager")!;
    expect(manager.args).toEqual(["actor", "manager", "--id", "manager", "--concurrency", "2"]);
  });

  it("give the target mover its repository, path and slots", () => {
    const mover = specs.find((s) => s.name === "repo-1-mover")!;
    expect(mover.args).toEqual(["actor", "target-mover", "--id", "repo-1-mover", "--slots", "4", "--repository", "repo-1", "--path", "/w/repository"]);
    expect(mover.serviceName).toBe(ServiceName.targetMover);
  });

  it("start the simulator from its config file and know it by the hypervisor id", () => {
    const sim = specs[0]!;
    expect(sim.args).toEqual(["simulator", "--config", "/w/simulator.json"]);
    expect(sim.id).toBe("sim-1");
    expect(sim.serviceName).toBe(ServiceName.hypervisorSimulator);
  });

  it("tune the allocator for the movers only", () => {
    for (const spec of specs) {
      const isMover = spec.kind === "source-mover" || spec.kind === "target-mover";
      expect(spec.env).toEqual(isMover ? MOVER_MALLOC_ENV : {});
    }
    expect(MOVER_MALLOC_ENV.MALLOC_ARENA_MAX).toBe("2");
  });
});
