// Command-line flags for the training commands: `--name value` or `--name=value`, booleans as
// bare `--name`. Every error names the flag and what was expected.
export type FlagKind = 'string' | 'int' | 'number' | 'boolean' | 'optional-string';

export interface FlagSpec {
  kind: FlagKind;
  /** One line of help text. */
  help: string;
  /** For 'int'/'number': the smallest accepted value. */
  min?: number;
  /** For 'number': values must be below this (exclusive), e.g. probabilities < 1. */
  below?: number;
  /** For 'string': the accepted values. */
  choices?: readonly string[];
}

export type FlagSpecs = Record<string, FlagSpec>;
export type FlagValues = Record<string, string | number | boolean | undefined>;

export class FlagError extends Error {}

function checkNumber(name: string, spec: FlagSpec, raw: string): number {
  const value = Number(raw);
  const integer = spec.kind === 'int';
  if (raw.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new FlagError(`--${name} expects ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(raw)}`);
  }
  if (spec.min !== undefined && value < spec.min) throw new FlagError(`--${name} must be >= ${spec.min}, got ${raw}`);
  if (spec.below !== undefined && value >= spec.below) throw new FlagError(`--${name} must be < ${spec.below}, got ${raw}`);
  return value;
}

/** Parses argv against `specs`; unknown flags and stray arguments are errors. */
export function parseFlags(argv: readonly string[], specs: FlagSpecs): FlagValues {
  const values: FlagValues = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new FlagError(`unexpected argument ${JSON.stringify(arg)} (flags start with --; see --help)`);
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const spec = specs[name];
    if (spec === undefined) throw new FlagError(`unknown flag --${name} (see --help)`);
    if (values[name] !== undefined) throw new FlagError(`--${name} was given twice`);
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
      values[name] = raw;
    }
  }
  return values;
}

export function flagHelp(usage: string, specs: FlagSpecs): string {
  const rows = Object.entries(specs).map(([name, spec]) => {
    const value = spec.kind === 'boolean' ? '' : spec.kind === 'optional-string' ? ' [VALUE]' : spec.choices ? ` ${spec.choices.join('|')}` : spec.kind === 'string' ? ' VALUE' : ' N';
    return `  --${`${name}${value}`.padEnd(28)} ${spec.help}`;
  });
  return [usage, '', 'options:', ...rows].join('\n');
}
