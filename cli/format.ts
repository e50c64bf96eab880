/**
 * Output helpers shared by the commands: human sizes and rates, durations, plain-text tables.
 * Binary units throughout (1 KiB = 1024 B), the way disk and block sizes are written.
 */

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"] as const;

/** `1288490188` → `1.2 GiB`; bytes below 1 KiB stay exact (`512 B`). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return "?";
  const sign = bytes < 0 ? "-" : "";
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${sign}${value} B`;
  // One decimal below 100 (1.2 GiB, 42.5 MiB), none above (256 MiB): three significant digits at most.
  const text = value < 100 ? value.toFixed(1).replace(/\.0$/, "") : Math.round(value).toString();
  return `${sign}${text} ${UNITS[unit]}`;
}

/** `104857600` → `100 MiB/s`. */
export function formatRate(bytesPerSec: number): string {
  return `${formatBytes(bytesPerSec)}/s`;
}

/** `1234` → `1.2 s`, `75000` → `1m 15s`, `3_723_000` → `1h 2m 3s`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "?";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1).replace(/\.0$/, "")} s`;
  const totalSeconds = Math.round(ms / 1000);
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  return h > 0 ? `${h}h ${m}m ${s}s` : `${m}m ${s}s`;
}

/** `2.345` → `2.35x`; 0 (nothing sent) → `-`. */
export function formatRatio(ratio: number): string {
  return ratio > 0 && Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : "-";
}

/** Local date and time, second precision: `2026-11-26 12:46:56`. */
export function formatTime(epochMs: number | undefined): string {
  if (epochMs === undefined) return "-";
  const d = new Date(epochMs);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * Renders rows as an aligned text table with a header line. Cells are strings; columns listed in
 * `alignRight` (by header) are right-aligned, which suits numbers and sizes.
 */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[], opts: { alignRight?: readonly string[] } = {}): string {
  const right = new Set(opts.alignRight ?? []);
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    headers
      .map((h, i) => {
        const cell = cells[i] ?? "";
        const width = widths[i]!;
        return right.has(h) ? cell.padStart(width) : cell.padEnd(width);
      })
      .join("  ")
      .trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join("\n");
}

/** Prints a value as pretty JSON followed by a newline (the `--json` form of every command). */
export function printJson(value: unknown, out: NodeJS.WritableStream = process.stdout): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}
