// Reading the fields of a JSON file that a program wrote and a person may have edited, cut short
// or mixed up: every error names the file, the field's path and what was expected, and says
// what was there instead ("state.json: trainer.step must be an integer >= 0, got "ten"").
export type JsonObject = Record<string, unknown>;

function describe(value: unknown): string {
  if (value === undefined) return 'nothing (the field is missing)';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * A JSON value stored as text in a file's metadata (safetensors' __metadata__ is strings only);
 * `where` starts the errors ("evaluator models/eval/x.safetensors").
 */
export function parseJsonMetadata(where: string, field: string, text: string | undefined): unknown {
  if (text === undefined) throw new Error(`${where}: metadata has no ${field}`);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${where}: metadata field ${field} is not valid JSON (${(err as Error).message})`);
  }
}

export class JsonFields {
  /** `where` starts every error: the op and the file, e.g. "TextToImage.load: /x/state.json". */
  constructor(readonly where: string) {}

  fail(field: string, expected: string, value: unknown): never {
    throw new Error(`${this.where}: ${field} must be ${expected}, got ${describe(value)}`);
  }

  object(value: unknown, field: string): JsonObject {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(field, 'an object', value);
    return value as JsonObject;
  }

  integer(value: unknown, field: string, min = -Infinity, max = Number.MAX_SAFE_INTEGER): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(field, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`, value);
    }
    return value;
  }

  /** A finite number within the bounds given: min/max inclusive, above/below exclusive. */
  number(value: unknown, field: string, range: { min?: number; above?: number; max?: number; below?: number } = {}): number {
    const { min, above, max, below } = range;
    const ok =
      typeof value === 'number' &&
      Number.isFinite(value) &&
      (min === undefined || value >= min) &&
      (above === undefined || value > above) &&
      (max === undefined || value <= max) &&
      (below === undefined || value < below);
    if (!ok) {
      const bounds = [min !== undefined ? `>= ${min}` : above !== undefined ? `> ${above}` : '', max !== undefined ? `<= ${max}` : below !== undefined ? `< ${below}` : '']
        .filter(Boolean)
        .join(' and ');
      this.fail(field, `a finite number${bounds ? ` ${bounds}` : ''}`, value);
    }
    return value as number;
  }

  boolean(value: unknown, field: string): boolean {
    if (typeof value !== 'boolean') this.fail(field, 'true or false', value);
    return value as boolean;
  }

  string(value: unknown, field: string): string {
    if (typeof value !== 'string') this.fail(field, 'a string', value);
    return value as string;
  }

  oneOf<T extends string>(value: unknown, field: string, choices: readonly T[]): T {
    if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) this.fail(field, `one of ${choices.map((c) => JSON.stringify(c)).join(', ')}`, value);
    return value as T;
  }

  array(value: unknown, field: string): unknown[] {
    if (!Array.isArray(value)) this.fail(field, 'an array', value);
    return value as unknown[];
  }
}
