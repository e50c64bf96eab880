#!/usr/bin/env node
// Applies one measured performance fix to @nats-io/nats-core's message parser (run by npm's
// postinstall). A message larger than one socket read is collected in a buffer that grows by
// doubling, allocating and copying ~3x its size; the fix allocates the message's size once.
// On Ferry's benchmark it cut the target mover's CPU by ~40% (docs/performance.md). It changes
// no behaviour: if the code is not the expected version the script says so and leaves it.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const MARKER = "ferry-patch: one buffer of the message's size";
const ORIGINAL = `            this.msgBuf = new denobuffer_1.DenoBuffer(buf.subarray(this.as));
        }`;
const PATCHED = `            // ${MARKER} instead of repeated doubling
            const rest = buf.subarray(this.as);
            const mb = new denobuffer_1.DenoBuffer();
            mb._buf = new Uint8Array(new ArrayBuffer(Math.max(this.ma.size, rest.length)), 0, 0);
            mb.write(rest);
            this.msgBuf = mb;
        }`;

let parserPath;
try {
  const require = createRequire(import.meta.url);
  parserPath = join(dirname(require.resolve("@nats-io/nats-core")), "parser.js");
} catch {
  console.warn("patch-nats-core: @nats-io/nats-core is not installed; nothing to patch");
  process.exit(0);
}
const source = readFileSync(parserPath, "utf8");
if (source.includes(MARKER)) {
  console.log("patch-nats-core: already applied");
} else if (source.split(ORIGINAL).length === 2) {
  writeFileSync(parserPath, source.replace(ORIGINAL, PATCHED));
  console.log("patch-nats-core: applied (message buffers sized once)");
} else {
  console.warn("patch-nats-core: parser.js is not the expected version; left unpatched (Ferry works, only slower on large messages)");
}
