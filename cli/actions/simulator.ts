import type { Command } from "commander";
import { loadSimulatorConfig } from "../../simulators/config.js";
import { start } from "../../simulators/main.js";

/** `ferry simulator` (options in cli/commands/simulator.ts). */
export async function simulator(opts: { config: string }, cmd: Command): Promise<void> {
  const globals = cmd.optsWithGlobals<{ nats?: string }>();
  const config = await loadSimulatorConfig(opts.config);
  const handle = await start({ config, natsUrl: globals.nats });
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        process.stderr.write(`ferry simulator: ${signal} again; exiting now\n`);
        process.exit(130);
      }
      stopping = true;
      // The logger writes asynchronously: flush it so the last lines are not lost on exit.
      const exit = (code: number) => handle.log.flush(() => process.exit(code));
      handle.stop().then(
        () => exit(0),
        (err: unknown) => {
          process.stderr.write(`ferry simulator: stop failed: ${(err as Error).message}\n`);
          exit(1);
        },
      );
      resolve();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}
