/**
 * What a client command prints, in the three `-o` formats: `plain` (for shells: the bare value,
 * `true`/`false`, or nothing for a write that went through), `json` (one JSON document per
 * command, for scripts) and `table` (aligned columns with a header, for people).
 */
import type { OutputFormat } from './client.js';

export interface Result {
  /** The `-o json` document. */
  json: unknown;
  /** The `-o plain` output: text gets a newline, bytes are written as they are, null prints nothing. */
  plain: string | Buffer | null;
  /** The `-o table` rows under `head`. */
  table: { head: string[]; rows: string[][] };
}

export function print(format: OutputFormat, r: Result, out: NodeJS.WritableStream = process.stdout): void {
  switch (format) {
    case 'json':
      out.write(`${JSON.stringify(r.json)}\n`);
      return;
    case 'table':
      out.write(table(r.table.head, r.table.rows));
      return;
    case 'plain':
      if (r.plain === null) return;
      out.write(typeof r.plain === 'string' ? `${r.plain}\n` : r.plain);
  }
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [head, ...rows].map((r) => `${line(r)}\n`).join('');
}

/** A value in one table cell or plain line: strings as they are, everything else as JSON. */
export function cell(value: unknown): string {
  return typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
}
