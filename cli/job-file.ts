import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { ErrorCode, FerryError, JobSpec, VmSelector } from "../protocol/mod.js";
import { parseSize } from "../simulators/size.js";

/**
 * Job files as operators write them (YAML or JSON): a JobSpec, where sizes may be written with
 * units (`blockSize: 1MiB`, `throttleBytesPerSec: 200MiB`). Every problem is reported with the
 * field it concerns (`vms.0: give exactly one of id, name, tag`), all at once.
 */

const SIZE_FIELDS = ["blockSize", "throttleBytesPerSec"] as const;
const TOP_LEVEL_FIELDS = new Set(Object.keys(JobSpec.shape));
const SELECTOR_FIELDS = new Set(Object.keys(VmSelector.shape));
const GUEST_FIELDS = new Set(Object.keys(JobSpec.shape.guestProcessing.unwrap().shape));

/** One problem in a job file: the field path (`vms.0.name`) and what is wrong with it. */
export interface JobFileIssue {
  path: string;
  message: string;
}

export class JobFileError extends FerryError {
  readonly issues: readonly JobFileIssue[];
  constructor(source: string, issues: readonly JobFileIssue[]) {
    super(ErrorCode.BadRequest, `${source}: invalid job:\n${issues.map((i) => `  ${i.path || "(file)"}: ${i.message}`).join("\n")}`, { retryable: false });
    this.issues = issues;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function unknownFields(object: Record<string, unknown>, known: ReadonlySet<string>, pathPrefix = ""): JobFileIssue[] {
  return Object.keys(object)
    .filter((key) => !known.has(key))
    .map((key) => ({ path: pathPrefix + key, message: `unknown field (known: ${[...known].join(", ")})` }));
}

/** Fields the schema does not know: a typo (`blocksize`) would otherwise be dropped silently. */
function unknownFieldIssues(raw: Record<string, unknown>): JobFileIssue[] {
  const issues = unknownFields(raw, TOP_LEVEL_FIELDS);
  if (Array.isArray(raw.vms)) {
    raw.vms.forEach((selector, i) => {
      if (isPlainObject(selector)) issues.push(...unknownFields(selector, SELECTOR_FIELDS, `vms.${i}.`));
    });
  }
  if (isPlainObject(raw.guestProcessing)) issues.push(...unknownFields(raw.guestProcessing, GUEST_FIELDS, "guestProcessing."));
  return issues;
}

function zodIssues(error: z.ZodError): JobFileIssue[] {
  return error.issues.map((issue) => ({ path: issue.path.map(String).join("."), message: issue.message }));
}

/** Validates an already-parsed job document; throws JobFileError listing every problem. */
export function parseJobSpec(raw: unknown, source = "job"): JobSpec {
  if (!isPlainObject(raw)) {
    throw new JobFileError(source, [{ path: "", message: `expected a mapping of job fields, got ${raw === null ? "nothing" : Array.isArray(raw) ? "a list" : typeof raw}` }]);
  }
  const issues = unknownFieldIssues(raw);
  const input: Record<string, unknown> = { ...raw };
  for (const field of SIZE_FIELDS) {
    const value = input[field];
    if (typeof value !== "string") continue;
    try {
      input[field] = parseSize(value);
    } catch (err) {
      issues.push({ path: field, message: `not a size: ${(err as Error).message}` });
      delete input[field];
    }
  }
  const parsed = JobSpec.safeParse(input);
  if (!parsed.success) issues.push(...zodIssues(parsed.error));
  if (issues.length > 0 || !parsed.success) throw new JobFileError(source, issues);
  return parsed.data;
}

/** Parses YAML or JSON text (JSON is YAML, but a `.json` file gets JSON's error messages). */
export function parseJobText(text: string, source = "job"): JobSpec {
  let raw: unknown;
  try {
    raw = extname(source).toLowerCase() === ".json" ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new FerryError(ErrorCode.BadRequest, `${source}: cannot parse: ${(err as Error).message}`, { retryable: false });
  }
  return parseJobSpec(raw, source);
}

/** Reads and validates a job file (`-` reads standard input). */
export function readJobFile(path: string): JobSpec {
  let text: string;
  try {
    text = readFileSync(path === "-" ? 0 : path, "utf8");
  } catch (err) {
    throw FerryError.from(err);
  }
  return parseJobText(text, path === "-" ? "stdin" : path);
}
