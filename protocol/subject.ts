import { ErrorCode, FerryError } from "./errors.js";
import { SUBJECT_ROOT } from "./version.js";

const TOKEN = /^[A-Za-z0-9_-]+$/;

/**
 * Joins subject tokens under `ferry.`; every variable token must be an Id-like token so that no
 * caller can inject `.`, `*` or `>` into a subject.
 */
export function subject(...tokens: string[]): string {
  for (const token of tokens) {
    if (!TOKEN.test(token)) {
      throw new FerryError(ErrorCode.BadRequest, `invalid subject token ${JSON.stringify(token)}`);
    }
  }
  return [SUBJECT_ROOT, ...tokens].join(".");
}

/** Like `subject`, but allows the NATS wildcards `*` and `>` as whole tokens (for subscriptions). */
export function subjectPattern(...tokens: string[]): string {
  for (const token of tokens) {
    if (token !== "*" && token !== ">" && !TOKEN.test(token)) {
      throw new FerryError(ErrorCode.BadRequest, `invalid subject token ${JSON.stringify(token)}`);
    }
  }
  return [SUBJECT_ROOT, ...tokens].join(".");
}
