import { InvalidArgumentError } from "commander";
import { parseSize } from "../simulators/size.js";

/** Option parsers for commander: they turn bad input into a message naming what was expected. */

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

export function sizeOption(value: string): number {
  try {
    const bytes = parseSize(value);
    if (bytes <= 0) throw new Error("must be more than 0 bytes");
    return bytes;
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** For repeatable options: `--disk a --disk b` → ["a", "b"] (undefined when never given). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * A command action whose implementation module is imported only when the command runs, so
 * `--help` and every other command start without loading it (NATS clients, stores, YAML, ...).
 */
export function lazyAction<A extends unknown[]>(load: () => Promise<(...args: A) => Promise<void>>): (...args: A) => Promise<void> {
  return async (...args) => (await load())(...args);
}
