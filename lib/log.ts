import { pino, type Logger } from "pino";

export type { Logger };

/**
 * Every process logs JSON lines to stderr (stdout stays free for `--json` output). In a terminal,
 * or with FERRY_LOG_PRETTY=1, lines are made readable by pino-pretty.
 */
export function createLogger(name: string, bindings: Record<string, unknown> = {}): Logger {
  const level = process.env.FERRY_LOG_LEVEL ?? "info";
  const pretty = process.env.FERRY_LOG_PRETTY === "1" || (process.env.FERRY_LOG_PRETTY !== "0" && process.stderr.isTTY);
  const options = { name, level, base: { pid: process.pid, ...bindings } };
  if (pretty) {
    return pino(options, pino.transport({ target: "pino-pretty", options: { destination: 2, colorize: true, translateTime: "SYS:HH:MM:ss.l" } }));
  }
  return pino(options, pino.destination({ dest: 2, sync: false }));
}
