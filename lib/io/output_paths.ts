// Checks of where a command will write, made before any work: a run that can only fail at its
// first checkpoint, or at its end with checkpoints off, loses everything it computed.
import { lstatSync, mkdtempSync, rmdirSync } from 'node:fs';
import path from 'node:path';

/** The nearest of `target` and its ancestors that exists, and what it is. */
function nearestExisting(target: string): { found: string; isDirectory: boolean } {
  let current = path.resolve(target);
  for (;;) {
    try {
      return { found: current, isDirectory: lstatSync(current).isDirectory() };
    } catch {
      const parent = path.dirname(current);
      if (parent === current) return { found: current, isDirectory: false };
      current = parent;
    }
  }
}

/** Whether something can be created in `dir`: tried for real, since permissions say nothing of read-only or virtual file systems (or of root). */
function creationError(dir: string): string | undefined {
  try {
    rmdirSync(mkdtempSync(path.join(dir, '.realtune-probe-')));
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}

/**
 * Fails unless `dir` is a writable directory or one that can be made (its nearest existing
 * ancestor is a writable directory). Creates nothing. `what` names it in the error ("--out").
 */
export function checkOutputDirectory(dir: string, what: string): void {
  const { found, isDirectory } = nearestExisting(dir);
  if (!isDirectory) {
    throw new Error(found === path.resolve(dir) ? `${what} ${dir} is a file, not a directory` : `${what} ${dir} cannot be made: ${found} is a file, not a directory`);
  }
  const problem = creationError(found);
  if (problem !== undefined) throw new Error(`${what} ${dir} is not writable: nothing can be created in ${found} (${problem})`);
}

/** Fails unless `file` can be written: not a directory, and its folder writable or makeable. */
export function checkOutputFile(file: string, what: string): void {
  let isDirectory = false;
  try {
    isDirectory = lstatSync(file).isDirectory();
  } catch {
    // Absent: its folder decides.
  }
  if (isDirectory) throw new Error(`${what} ${file} is a directory, expected a file path`);
  checkOutputDirectory(path.dirname(file), `${what} ${file}: its folder`);
}

/** Whether `inner` is `outer` or lies inside it. */
export function isWithin(inner: string, outer: string): boolean {
  const relative = path.relative(path.resolve(outer), path.resolve(inner));
  return relative === '' || (relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative));
}
