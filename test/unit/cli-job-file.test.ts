import { describe, expect, it } from "vitest";
import { JobFileError, parseJobSpec, parseJobText } from "../../cli/job-file.js";

const MiB = 1024 * 1024;

function issuesOf(fn: () => unknown): Array<{ path: string; message: string }> {
  try {
    fn();
  } catch (err) {
    if (err instanceof JobFileError) return [...err.issues];
    throw err;
  }
  throw new Error("expected a JobFileError");
}

describe("job files", () => {
  it("reads a YAML job with sizes written in units and fills in the defaults", () => {
    const job = parseJobText(
      ["id: daily", "hypervisor: hv-1", "repository: repo-1", "vms:", "  - name: sql-01", "    guestProcessing: true", "  - tag: web", "blockSize: 4MiB", "throttleBytesPerSec: 200MiB"].join("\n"),
      "daily.yaml",
    );
    expect(job.blockSize).toBe(4 * MiB);
    expect(job.throttleBytesPerSec).toBe(200 * MiB);
    expect(job.vms).toEqual([{ name: "sql-01", guestProcessing: true }, { tag: "web" }]);
    expect(job.compression).toBe("snappy");
    expect(job.priority).toBe(50);
  });

  it("reads JSON files as JSON", () => {
    const job = parseJobText(JSON.stringify({ id: "j1", hypervisor: "hv-1", repository: "repo-1", vms: [{ id: "vm-1" }], blockSize: "1MiB" }), "job.json");
    expect(job.blockSize).toBe(MiB);
  });

  it("names the selector that gives more than one of id, name and tag", () => {
    const issues = issuesOf(() => parseJobSpec({ id: "j", hypervisor: "hv", repository: "r", vms: [{ id: "vm-1", name: "x" }] }));
    expect(issues).toContainEqual({ path: "vms.0", message: "give exactly one of id, name, tag" });
  });

  it("reports every problem at once, each with its field", () => {
    const issues = issuesOf(() => parseJobSpec({ id: "bad id", repository: "r", vms: [{ tag: "t" }, {}], blockSize: "3MiB", compression: "zstd" }));
    const paths = issues.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(["id", "hypervisor", "vms.1", "blockSize", "compression"]));
    expect(issues.find((i) => i.path === "blockSize")?.message).toMatch(/power of two/);
  });

  it("flags unknown fields instead of dropping a typo silently", () => {
    const issues = issuesOf(() =>
      parseJobSpec({ id: "j", hypervisor: "hv", repository: "r", vms: [{ id: "vm-1", guestprocessing: true }], blocksize: "1MiB", guestProcessing: { enable: true } }),
    );
    expect(issues.map((i) => i.path)).toEqual(expect.arrayContaining(["blocksize", "vms.0.guestprocessing", "guestProcessing.enable"]));
  });

  it("names the field whose size cannot be read", () => {
    const issues = issuesOf(() => parseJobSpec({ id: "j", hypervisor: "hv", repository: "r", vms: [{ id: "vm-1" }], blockSize: "one meg" }));
    expect(issues).toEqual([{ path: "blockSize", message: expect.stringMatching(/^not a size: invalid size "one meg"/) }]);
  });

  it("puts the file name and each field in the error message", () => {
    expect(() => parseJobText("id: j\nvms: []\n", "jobs/j.yaml")).toThrow(/jobs\/j\.yaml: invalid job:\n {2}hypervisor: .*\n(.|\n)*vms: /);
  });

  it("rejects a document that is not a mapping, and YAML it cannot parse", () => {
    expect(issuesOf(() => parseJobSpec(["id: x"]))[0]?.message).toMatch(/got a list/);
    expect(() => parseJobText("id: [unclosed", "j.yaml")).toThrow(/j\.yaml: cannot parse/);
  });
});
