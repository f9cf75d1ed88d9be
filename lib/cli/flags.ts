// Command-line flags for the training commands: `--name value` or `--name=value`, booleans as
// bare `--name`. One spec per flag drives both the parser and the help: the range, the choices
// and the default that --help prints are the ones parseFlags enforces and fills in. Numbers are
// read strictly (decimal digits, a point, an exponent: "0x10", " 5" and "1_000" are errors).
// Every error names the flag and what was expected.
export type FlagKind = 'string' | 'int' | 'number' | 'boolean' | 'optional-string';

export interface FlagSpec {
  kind: FlagKind;
  /** What the flag does, in one line; the help adds the range, the choices and the default. */
  help: string;
  /** For 'int'/'number': the smallest accepted value. */
  min?: number;
  /** For 'int'/'number': the largest accepted value. */
  max?: number;
  /** For 'number': values must be below this (exclusive), e.g. probabilities < 1. */
  below?: number;
  /** For 'string': the accepted values. */
  choices?: readonly string[];
  /** The value when the flag is not given (flags whose absence means something have none). */
  default?: number | string;
  /** For 'string': may be given more than once; the values are joined with commas (a list flag). */
  repeatable?: boolean;
}

export type FlagSpecs = Record<string, FlagSpec>;
export type FlagValues = Record<string, string | number | boolean | undefined>;

export class FlagError extends Error {}

const integerText = /^[+-]?\d+$/;
const numberText = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function checkNumber(name: string, spec: FlagSpec, raw: string): number {
  const integer = spec.kind === 'int';
  const value = Number(raw);
  if (!(integer ? integerText : numberText).test(raw) || !Number.isFinite(value) || (integer && !Number.isSafeInteger(value))) {
    throw new FlagError(`--${name} expects ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(raw)} (${integer ? 'decimal digits only' : 'decimal, e.g. 0.5 or 3e-4'})`);
  }
  if (spec.min !== undefined && value < spec.min) throw new FlagError(`--${name} must be >= ${spec.min}, got ${raw}`);
  if (spec.max !== undefined && value > spec.max) throw new FlagError(`--${name} must be <= ${spec.max}, got ${raw}`);
  if (spec.below !== undefined && value >= spec.below) throw new FlagError(`--${name} must be < ${spec.below}, got ${raw}`);
  return value;
}

/**
 * Parses argv against `specs`; unknown flags and stray arguments are errors. Flags not given
 * get their spec's default; those without one stay undefined.
 */
export function parseFlags(argv: readonly string[], specs: FlagSpecs): FlagValues {
  const values: FlagValues = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new FlagError(`unexpected argument ${JSON.stringify(arg)} (flags start with --; see --help)`);
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const spec = specs[name];
    if (spec === undefined) throw new FlagError(`unknown flag --${name} (see --help)`);
    const earlier = values[name];
    if (earlier !== undefined && !spec.repeatable) throw new FlagError(`--${name} was given twice`);
    if (spec.kind === 'boolean') {
      if (eq >= 0) throw new FlagError(`--${name} takes no value`);
      values[name] = true;
      continue;
    }
    let raw: string | undefined;
    if (eq >= 0) raw = arg.slice(eq + 1);
    else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) raw = argv[++i];
    if (raw === undefined) {
      if (spec.kind === 'optional-string') {
        values[name] = true;
        continue;
      }
      throw new FlagError(`--${name} expects a value (${spec.help})`);
    }
    if (spec.kind === 'int' || spec.kind === 'number') values[name] = checkNumber(name, spec, raw);
    else {
      if (spec.choices && !spec.choices.includes(raw)) throw new FlagError(`--${name} must be one of ${spec.choices.join(', ')}, got ${JSON.stringify(raw)}`);
      values[name] = earlier === undefined ? raw : `${String(earlier)},${raw}`;
    }
  }
  for (const [name, spec] of Object.entries(specs)) if (values[name] === undefined && spec.default !== undefined) values[name] = spec.default;
  return values;
}

/** The accepted values of a numeric flag, as the parser checks them ("an integer >= 1"). */
export function flagRange(spec: FlagSpec): string | undefined {
  if (spec.kind !== 'int' && spec.kind !== 'number') return undefined;
  const bounds = [spec.min !== undefined ? `>= ${spec.min}` : '', spec.max !== undefined ? `<= ${spec.max}` : spec.below !== undefined ? `< ${spec.below}` : ''].filter(Boolean);
  return `${spec.kind === 'int' ? 'integer' : 'number'}${bounds.length > 0 ? ` ${bounds.join(', ')}` : ''}`;
}

export function flagHelp(usage: string, specs: FlagSpecs): string {
  const rows = Object.entries(specs).map(([name, spec]) => {
    const value = spec.kind === 'boolean' ? '' : spec.kind === 'optional-string' ? ' [VALUE]' : spec.choices ? ` ${spec.choices.join('|')}` : spec.kind === 'string' ? ' VALUE' : ' N';
    const facts = [flagRange(spec), spec.repeatable ? 'repeatable, or comma-separated' : undefined, spec.default !== undefined ? `default ${spec.default}` : undefined].filter(Boolean);
    return `  --${`${name}${value}`.padEnd(28)} ${spec.help}${facts.length > 0 ? ` [${facts.join('; ')}]` : ''}`;
  });
  return [usage, '', 'options:', ...rows].join('\n');
}
