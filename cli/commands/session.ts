import type { Command } from "commander";
import { lazyAction } from "../options.js";

export function registerSessionCommand(program: Command): void {
  const session = program.command("session").description("sessions: runs of backup jobs, restores and verifies");

  session
    .command("list")
    .description("list sessions, oldest first")
    .option("--kind <kind>", "only backup, restore or verify sessions")
    .option("--job <jobId>", "only sessions of this job")
    .option("--json", "print JSON")
    .action(lazyAction(async () => (await import("../actions/session.js")).sessionList));

  session
    .command("show")
    .description("report of one session: result, duration, VMs with restore points and warnings, per-task stats")
    .argument("<sessionId>", "session id")
    .option("--wait", "wait until the session has ended (progress on stderr); exit 1 if it failed")
    .option("--json", "print the full session record as JSON")
    .action(lazyAction(async () => (await import("../actions/session.js")).sessionShow));
}
