import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "actors/**/*.test.ts", "lib/**/*.test.ts", "protocol/**/*.test.ts", "simulators/**/*.test.ts"],
    // Integration tests spawn nats-server and actor processes; on 2 cores they run one file at a time.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    env: { FERRY_LOG_LEVEL: process.env.FERRY_LOG_LEVEL ?? "warn" },
  },
});
