import { Command } from "commander";
import { ErrorCode, FerryError } from "../../protocol/mod.js";
import { withContext } from "../context.js";
import { printJson } from "../format.js";
import { renderSessionList, renderSessionReport, sessionSummaryJson } from "../report.js";
import { exitCodeFor, waitForSession } from "../sessions.js";

export function registerSessionCommand(program: Command): void {
  const session = program.command("session").description("sessions: runs of backup jobs, restores and verifies");

  session
    .command("list")
    .description("list sessions, oldest first")
    .option("--kind <kind>", "only backup, restore or verify sessions")
    .option("--job <jobId>", "only sessions of this job")
    .option("--json", "print JSON")
    .action(async (opts: { kind?: string; job?: string; json?: boolean }, cmd: Command) => {
      await withContext(cmd, async (ctx) => {
        const sessions = (await ctx.sessions.list()).filter((s) => (!opts.kind || s.kind === opts.kind) && (!opts.job || s.jobId === opts.job));
        if (opts.json) printJson(sessions.map(sessionSummaryJson));
        else process.stdout.write(`${renderSessionList(sessions)}\n`);
      });
    });

  session
    .command("show")
    .description("report of one session: result, duration, VMs with restore points and warnings, per-task stats")
    .argument("<sessionId>", "session id")
    .option("--wait", "wait until the session has ended (progress on stderr); exit 1 if it failed")
    .option("--json", "print the full session record as JSON")
    .action(async (sessionId: string, opts: { wait?: boolean; json?: boolean }, cmd: Command) => {
      await withContext(cmd, async (ctx) => {
        const record = opts.wait ? await waitForSession(ctx, sessionId, { progress: true }) : (await ctx.sessions.get(sessionId))?.session;
        if (!record) throw new FerryError(ErrorCode.NotFound, `session ${sessionId} not found (\`ferry session list\` shows the sessions)`, { retryable: false });
        if (opts.json) printJson({ ...record, summary: sessionSummaryJson(record) });
        else process.stdout.write(`${renderSessionReport(record)}\n`);
        if (opts.wait) process.exitCode = exitCodeFor(record.result);
      });
    });
}
