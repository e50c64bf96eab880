import { readFile } from "node:fs/promises";
import { dirname, extname, isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { ErrorCode, FerryError, Id } from "../protocol/mod.js";
import { parseSize } from "./size.js";

/** A byte count given as a number or a string such as "256MiB" (see `parseSize`). */
const Size = z.union([z.number(), z.string()]).transform((value, ctx) => {
  try {
    return parseSize(value);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: (err as Error).message });
    return z.NEVER;
  }
});

const Percent = z.number().min(0).max(100);

export const DiskContentConfig = z.discriminatedUnion("kind", [
  /** Blocks generated from a seed: zero blocks (holes), text-like blocks, random blocks. */
  z.strictObject({
    kind: z.literal("generated"),
    seed: z.union([z.number().int(), z.string().min(1)]),
    zeroPct: Percent,
    compressiblePct: Percent,
    randomPct: Percent,
  }),
  /** An existing raw file attached read-only: never modified by the simulator. */
  z.strictObject({ kind: z.literal("image"), path: z.string().min(1) }),
  /** A sparse file of zeros. */
  z.strictObject({ kind: z.literal("empty") }),
]);
export type DiskContentConfig = z.infer<typeof DiskContentConfig>;

export const DiskConfig = z.strictObject({
  id: Id,
  label: z.string().min(1).optional(),
  /** Required, except for images, whose size is the file's (when given, it must match). */
  sizeBytes: Size.optional(),
  /** Defaults to the first datastore. */
  datastoreId: Id.optional(),
  content: DiskContentConfig.default({ kind: "empty" }),
});
export type DiskConfig = z.infer<typeof DiskConfig>;
export type DiskConfigInput = z.input<typeof DiskConfig>;

export const ApplicationConfig = z.strictObject({
  name: z.string().min(1),
  kind: z.string().min(1).default("application"),
  /** How long the application takes to flush and freeze; a value beyond the freeze timeout simulates a hang. */
  freezeMs: z.number().int().min(0).default(0),
  /** Written to the VM's first disk while the application runs (not while frozen). */
  writeBytesPerSec: Size.default(0),
});
export type ApplicationConfig = z.infer<typeof ApplicationConfig>;

export const GuestConfig = z.strictObject({
  os: z.string().min(1).default("linux"),
  applications: z.array(ApplicationConfig).default([]),
});
export type GuestConfig = z.infer<typeof GuestConfig>;

export const WorkloadConfig = z.strictObject({
  bytesPerSec: Size,
  ioSizeBytes: Size.default(64 * 1024),
});
export type WorkloadConfig = z.infer<typeof WorkloadConfig>;

export const VmConfig = z.strictObject({
  id: Id,
  /** Defaults to the id. */
  name: z.string().min(1).optional(),
  /** Defaults to the first host. */
  hostId: Id.optional(),
  guestOs: z.string().min(1).default("other"),
  tags: z.array(z.string()).default([]),
  powerState: z.enum(["poweredOn", "poweredOff"]).default("poweredOn"),
  disks: z.array(DiskConfig).min(1),
  /** Present when the VM runs a guest agent (application-aware processing is possible). */
  guest: GuestConfig.optional(),
  /** A background writer started with the simulator. */
  workload: WorkloadConfig.optional(),
});
export type VmConfig = z.infer<typeof VmConfig>;
export type VmConfigInput = z.input<typeof VmConfig>;

export const HostConfig = z.strictObject({
  id: Id,
  name: z.string().min(1).optional(),
  /** Datastores the host sees; defaults to all (shared storage). */
  datastores: z.array(Id).optional(),
});

export const DatastoreConfig = z.strictObject({
  id: Id,
  name: z.string().min(1).optional(),
  /** Directory holding the datastore's files; relative paths are relative to the config file. */
  path: z.string().min(1),
  capacityBytes: Size,
});

export const SimulatorConfigSchema = z
  .strictObject({
    hypervisorId: Id,
    /** Keep each snapshot's content as a file after the snapshot is removed (served by `sim.snapshotImages`). */
    retainSnapshotImages: z.boolean().default(false),
    hosts: z.array(HostConfig).min(1),
    datastores: z.array(DatastoreConfig).min(1),
    vms: z.array(VmConfig).default([]),
  })
  .superRefine((config, ctx) => {
    const unique = (ids: string[], path: (i: number) => (string | number)[], what: string) => {
      const seen = new Set<string>();
      ids.forEach((id, i) => {
        if (seen.has(id)) ctx.addIssue({ code: "custom", path: path(i), message: `duplicate ${what} id ${JSON.stringify(id)}` });
        seen.add(id);
      });
    };
    unique(config.hosts.map((h) => h.id), (i) => ["hosts", i, "id"], "host");
    unique(config.datastores.map((d) => d.id), (i) => ["datastores", i, "id"], "datastore");
    unique(config.vms.map((v) => v.id), (i) => ["vms", i, "id"], "VM");
    const hostIds = new Set(config.hosts.map((h) => h.id));
    const datastoreIds = new Set(config.datastores.map((d) => d.id));
    config.hosts.forEach((host, h) =>
      host.datastores?.forEach((ds, d) => {
        if (!datastoreIds.has(ds)) ctx.addIssue({ code: "custom", path: ["hosts", h, "datastores", d], message: `unknown datastore ${JSON.stringify(ds)}` });
      }),
    );
    config.vms.forEach((vm, v) => {
      if (vm.hostId !== undefined && !hostIds.has(vm.hostId)) {
        ctx.addIssue({ code: "custom", path: ["vms", v, "hostId"], message: `unknown host ${JSON.stringify(vm.hostId)}` });
      }
      unique(vm.disks.map((d) => d.id), (i) => ["vms", v, "disks", i, "id"], "disk");
      vm.disks.forEach((disk, d) => {
        const at = (field: string) => ["vms", v, "disks", d, field];
        if (disk.datastoreId !== undefined && !datastoreIds.has(disk.datastoreId)) {
          ctx.addIssue({ code: "custom", path: at("datastoreId"), message: `unknown datastore ${JSON.stringify(disk.datastoreId)}` });
        }
        if (disk.content.kind !== "image" && (disk.sizeBytes === undefined || disk.sizeBytes === 0)) {
          ctx.addIssue({ code: "custom", path: at("sizeBytes"), message: "required and above 0 for generated and empty disks" });
        }
        if (disk.content.kind === "generated") {
          const { zeroPct, compressiblePct, randomPct } = disk.content;
          if (Math.abs(zeroPct + compressiblePct + randomPct - 100) > 1e-6) {
            ctx.addIssue({
              code: "custom",
              path: ["vms", v, "disks", d, "content"],
              message: `zeroPct + compressiblePct + randomPct must be 100, got ${zeroPct + compressiblePct + randomPct}`,
            });
          }
        }
      });
      if (vm.workload && (vm.workload.ioSizeBytes < 512 || vm.workload.ioSizeBytes > 8 * 1024 * 1024)) {
        ctx.addIssue({ code: "custom", path: ["vms", v, "workload", "ioSizeBytes"], message: "must be from 512 bytes to 8 MiB" });
      }
    });
  });

/** A validated simulator configuration, with defaults filled in. Serializing it as JSON gives a valid config file. */
export type SimulatorConfig = z.output<typeof SimulatorConfigSchema>;
/** A configuration as written in a file (sizes may be strings, defaults may be left out). */
export type SimulatorConfigInput = z.input<typeof SimulatorConfigSchema>;

/** `vms[0].disks[1].sizeBytes`: the path of an issue as an operator would write it. */
function fieldName(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) out += typeof part === "number" ? `[${part}]` : `${out ? "." : ""}${String(part)}`;
  return out || "(top level)";
}

function describe(error: z.ZodError): string {
  return error.issues
    .slice(0, 10)
    .map((issue) => `${fieldName(issue.path)}: ${issue.message}`)
    .join("; ");
}

/**
 * Validates a configuration (already parsed from JSON or YAML). Relative datastore and image paths
 * are resolved against `baseDir` (the config file's folder). Errors name the field:
 * `vms[0].disks[0].sizeBytes: invalid size "2XB" ...`.
 */
export function parseSimulatorConfig(raw: unknown, opts: { baseDir?: string; source?: string } = {}): SimulatorConfig {
  const parsed = SimulatorConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new FerryError(ErrorCode.BadRequest, `invalid simulator config${opts.source ? ` ${opts.source}` : ""}: ${describe(parsed.error)}`, {
      retryable: false,
    });
  }
  const config = parsed.data;
  const baseDir = opts.baseDir ?? process.cwd();
  const absolute = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  for (const ds of config.datastores) ds.path = absolute(ds.path);
  for (const vm of config.vms) {
    for (const disk of vm.disks) if (disk.content.kind === "image") disk.content.path = absolute(disk.content.path);
  }
  return config;
}

/** Reads a JSON (`.json`) or YAML (anything else) config file and validates it. */
export async function loadSimulatorConfig(path: string): Promise<SimulatorConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new FerryError(ErrorCode.NotFound, `cannot read simulator config ${path}: ${(err as Error).message}`, { retryable: false });
  }
  let raw: unknown;
  try {
    raw = extname(path).toLowerCase() === ".json" ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new FerryError(ErrorCode.BadRequest, `cannot parse simulator config ${path}: ${(err as Error).message}`, { retryable: false });
  }
  return parseSimulatorConfig(raw, { baseDir: dirname(resolve(path)), source: path });
}
