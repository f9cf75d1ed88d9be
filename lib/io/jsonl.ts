// JSON Lines manifests: one JSON object per non-empty line, with errors that name the op, the
// file and line, and what was expected.
import { promises as fs } from 'node:fs';

export interface JsonlRecord {
  /** `file:line`, for messages about this record. */
  where: string;
  record: Record<string, unknown>;
}

/** The objects of a JSONL file; `shape` describes one in errors, e.g. '{"image": ..., "caption": ...}'. */
export async function readJsonl(file: string, op: string, shape: string): Promise<JsonlRecord[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    throw new Error(`${op}: cannot read ${file}: ${(error as Error).message}`);
  }
  const records: JsonlRecord[] = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.trim();
    if (line === '') continue;
    const where = `${file}:${n + 1}`;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (error) {
      throw new Error(`${op}: ${where}: not valid JSON (${(error as Error).message})`);
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) throw new Error(`${op}: ${where}: expected an object ${shape}`);
    records.push({ where, record: record as Record<string, unknown> });
  }
  return records;
}
