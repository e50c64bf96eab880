import type { Command } from "commander";
import { ErrorCode, FerryError } from "../../protocol/mod.js";
import { withContext } from "../context.js";
import { printJson } from "../format.js";
import { renderSessionList, renderSessionReport, sessionSummaryJson } from "../report.js";
import { exitCodeFor, waitForSession } from "../sessions.js";

/** `ferry session …` (options in cli/commands/session.ts). */

export async function sessionList(opts: { kind?: string; job?: string; json?: boolean }, cmd: Command): Promise<void> {
  await withContext(cmd, async (ctx) => {
    const sessions = (await ctx.sessions.list()).filter((s) => (!opts.kind || s.kind === opts.kind) && (!opts.job || s.jobId === opts.job));
    if (opts.json) printJson(sessions.map(sessionSummaryJson));
    else process.stdout.write(`${renderSessionList(sessions)}\n`);
  });
}

export async function sessionShow(sessionId: string, opts: { wait?: boolean; json?: boolean }, cmd: Command): Promise<void> {
  await withContext(cmd, async (ctx) => {
    const record = opts.wait ? await waitForSession(ctx, sessionId, { progress: true }) : (await ctx.sessions.get(sessionId))?.session;
    if (!record) throw new FerryError(ErrorCode.NotFound, `session ${sessionId} not found (\`ferry session list\` shows the sessions)`, { retryable: false });
    if (opts.json) printJson({ ...record, summary: sessionSummaryJson(record) });
    else process.stdout.write(`${renderSessionReport(record)}\n`);
    if (opts.wait) process.exitCode = exitCodeFor(record.result);
  });
}
