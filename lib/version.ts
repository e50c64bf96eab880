import { readFileSync } from "node:fs";
import { projectRoot } from "./paths.js";

/** Ferry's release version, from package.json. */
export const FERRY_VERSION: string = (JSON.parse(readFileSync(`${projectRoot()}/package.json`, "utf8")) as { version: string }).version;
