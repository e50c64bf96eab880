import { InvalidArgumentError } from "commander";
import { describe, expect, it } from "vitest";
import { formatBytes, formatDuration, formatRate, formatRatio, renderTable } from "../../cli/format.js";
import { positiveInt, sizeOption } from "../../cli/options.js";

describe("formatBytes", () => {
  it("keeps bytes below 1 KiB exact", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(512)).toBe("512 B");
  });

  it("uses binary units with one decimal below 100 and none above", () => {
    expect(formatBytes(1024)).toBe("1 KiB");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(1.2 * 1024 ** 3)).toBe("1.2 GiB");
    expect(formatBytes(256 * 1024 ** 2)).toBe("256 MiB");
    expect(formatBytes(42.54 * 1024 ** 2)).toBe("42.5 MiB");
  });

  it("says ? for a value that is not a number", () => {
    expect(formatBytes(Number.NaN)).toBe("?");
  });
});

describe("formatRate and formatRatio", () => {
  it("writes a rate as a size per second", () => {
    expect(formatRate(100 * 1024 * 1024)).toBe("100 MiB/s");
  });

  it("writes a ratio with two decimals, and a dash when nothing was sent", () => {
    expect(formatRatio(2.345)).toBe("2.35x");
    expect(formatRatio(0)).toBe("-");
  });
});

describe("formatDuration", () => {
  it("picks milliseconds, seconds, or minutes and hours by magnitude", () => {
    expect(formatDuration(250)).toBe("250 ms");
    expect(formatDuration(1234)).toBe("1.2 s");
    expect(formatDuration(75_000)).toBe("1m 15s");
    expect(formatDuration(3_723_000)).toBe("1h 2m 3s");
  });
});

describe("renderTable", () => {
  it("aligns columns under upper-cased headers and right-aligns the columns asked for", () => {
    const text = renderTable(["vm", "size"], [["sql-01", "256 MiB"], ["app-2", "1 GiB"]], { alignRight: ["size"] });
    expect(text.split("\n")).toEqual(["VM         SIZE", "sql-01  256 MiB", "app-2     1 GiB"]);
  });
});

describe("command-line option parsers", () => {
  it("reads sizes with binary units", () => {
    expect(sizeOption("256MiB")).toBe(256 * 1024 * 1024);
    expect(sizeOption("1G")).toBe(1024 ** 3);
  });

  it("rejects a size without a known unit or of zero bytes with a message", () => {
    expect(() => sizeOption("12 parsecs")).toThrow(InvalidArgumentError);
    expect(() => sizeOption("0")).toThrow(/more than 0/);
  });

  it("accepts only positive integers as counts", () => {
    expect(positiveInt("3")).toBe(3);
    expect(() => positiveInt("0")).toThrow(InvalidArgumentError);
    expect(() => positiveInt("1.5")).toThrow(InvalidArgumentError);
  });
});
