import { describe, expect, it } from "vitest";
import { formatSize, parseSize } from "../../simulators/size.js";

describe("parseSize", () => {
  it("reads binary units as powers of 1024", () => {
    expect(parseSize("256MiB")).toBe(256 * 1024 * 1024);
    expect(parseSize("2GiB")).toBe(2 * 1024 ** 3);
    expect(parseSize("64 KiB")).toBe(65536);
    expect(parseSize("1T")).toBe(1024 ** 4);
    expect(parseSize("1.5g")).toBe(1.5 * 1024 ** 3);
  });

  it("reads decimal units as powers of 1000 and bare numbers as bytes", () => {
    expect(parseSize("10MB")).toBe(10_000_000);
    expect(parseSize("4096")).toBe(4096);
    expect(parseSize("512B")).toBe(512);
    expect(parseSize(123)).toBe(123);
  });

  it("rejects unknown units, negative and fractional byte counts", () => {
    expect(() => parseSize("2XB")).toThrow(/invalid size "2XB"/);
    expect(() => parseSize("")).toThrow(/invalid size/);
    expect(() => parseSize("-1MiB")).toThrow(/invalid size/);
    expect(() => parseSize(-5)).toThrow(/non-negative/);
    expect(() => parseSize(1.5)).toThrow(/whole number/);
    expect(() => parseSize("0.3B")).toThrow(/whole number/);
  });

  it("formats sizes back for people", () => {
    expect(formatSize(256 * 1024 * 1024)).toBe("256 MiB");
    expect(formatSize(1536)).toBe("1.50 KiB");
    expect(formatSize(10)).toBe("10 B");
  });
});
