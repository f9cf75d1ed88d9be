// Writes that never leave a half-written file or directory behind: write beside the target
// under a temporary name, flush to disk, then rename over it.
import { closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';

function temporaryName(target: string, kind: string): string {
  return `${target}.${kind}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * Flushes a directory's entries (a rename is durable only once its directory is). Best effort:
 * some platforms and file systems cannot open or fsync a directory.
 */
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Durability is then up to the file system; the rename itself is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function writeAndSync(file: string, data: Uint8Array | string): void {
  const fd = openSync(file, 'w');
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Replaces `file` with `data` atomically (the old contents stay until the new are on disk). */
export function atomicWriteFile(file: string, data: Uint8Array | string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = temporaryName(file, 'tmp');
  try {
    writeAndSync(tmp, data);
    renameSync(tmp, file);
    syncDirectory(path.dirname(file));
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

export function writeJsonAtomic(file: string, value: unknown): void {
  atomicWriteFile(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** The steps of a directory swap, in order (the first save of a directory has no previous version to move). */
export type SwapStep = 'written' | 'moved-aside' | 'moved-in' | 'removed-previous';

let swapStepHook: ((step: SwapStep, dir: string) => void) | undefined;

/**
 * Test seam: `hook` runs after each step of every directory swap. What it throws stands for the
 * process dying at that point: the swap stops there and nothing is cleaned up or rolled back,
 * so tests can leave exactly what a kill would. Pass undefined to remove it.
 */
export function onDirectorySwapStep(hook: ((step: SwapStep, dir: string) => void) | undefined): void {
  swapStepHook = hook;
}

class SwapInterrupted extends Error {}

function reached(step: SwapStep, dir: string): void {
  if (swapStepHook === undefined) return;
  try {
    swapStepHook(step, dir);
  } catch (err) {
    throw new SwapInterrupted(`writeDirectoryAtomic: interrupted after step ${step} of ${dir}`, { cause: err });
  }
}

export interface DirectoryWriteOptions {
  /**
   * Says why the directory now at the target must not be replaced, or undefined when it may be
   * (one this kind of save wrote). Default: only an empty directory may be replaced.
   */
  replaceRefusal?: (existing: string) => string | undefined;
}

function emptyDirectoryOnly(existing: string): string | undefined {
  const names = readdirSync(existing);
  return names.length === 0 ? undefined : `${existing} is not empty (it holds ${names.slice(0, 3).join(', ')}${names.length > 3 ? ', ...' : ''})`;
}

/** Why `target` cannot be replaced by a directory: it is something other than a directory, or the policy refuses it. */
function replaceProblem(target: string, refusal: (existing: string) => string | undefined): string | undefined {
  let stats;
  try {
    stats = lstatSync(target);
  } catch {
    return undefined;
  }
  if (stats.isSymbolicLink()) return `${target} is a symbolic link, not a directory a save wrote`;
  if (!stats.isDirectory()) return `${target} is a file, not a directory`;
  return refusal(target);
}

/**
 * Replaces directory `dir` with one holding exactly `files` (name -> contents). The new
 * directory is written completely under a temporary name first; the previous one is kept
 * until the new one is in place, so an interruption leaves one complete version on disk.
 * Only a directory `options.replaceRefusal` accepts is replaced: anything else at `dir` (a
 * file, a link, a directory holding other things) is an error and stays as it is.
 */
export function writeDirectoryAtomic(dir: string, files: Record<string, Uint8Array | string>, options: DirectoryWriteOptions = {}): void {
  for (const name of Object.keys(files)) {
    if (name.includes('/') || name.includes('\\') || name === '' || name.startsWith('.')) {
      throw new Error(`writeDirectoryAtomic: invalid file name ${JSON.stringify(name)}`);
    }
  }
  const refused = replaceProblem(dir, options.replaceRefusal ?? emptyDirectoryOnly);
  if (refused !== undefined) throw new Error(`writeDirectoryAtomic: refusing to replace ${dir}: ${refused}`);
  const tmp = temporaryName(dir, 'tmp');
  let previous: string | undefined;
  let inPlace = false;
  mkdirSync(path.dirname(dir), { recursive: true });
  mkdirSync(tmp);
  try {
    for (const [name, data] of Object.entries(files)) writeAndSync(path.join(tmp, name), data);
    syncDirectory(tmp);
    reached('written', dir);
    if (existsSync(dir)) {
      previous = temporaryName(dir, 'old');
      renameSync(dir, previous);
      reached('moved-aside', dir);
    }
    renameSync(tmp, dir);
    inPlace = true;
    syncDirectory(path.dirname(dir));
    reached('moved-in', dir);
    if (previous !== undefined) {
      rmSync(previous, { recursive: true, force: true });
      reached('removed-previous', dir);
    }
  } catch (err) {
    if (err instanceof SwapInterrupted) throw err;
    // A failure (not a crash): put the previous version back where it was.
    if (!inPlace) {
      rmSync(tmp, { recursive: true, force: true });
      if (previous !== undefined && !existsSync(dir)) renameSync(previous, dir);
    }
    throw err;
  }
  for (const stale of leftovers(dir)) rmSync(stale.path, { recursive: true, force: true });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface Leftover {
  path: string;
  kind: 'tmp' | 'old';
  mtimeMs: number;
}

/**
 * Temporary and previous versions of `target` left beside it by a write that was interrupted:
 * by processes which have since died, or by this one (its saves are synchronous, so none of its
 * own is still in progress). Those of other live processes may still be in use.
 */
function leftovers(target: string): Leftover[] {
  const parent = path.dirname(target);
  const base = path.basename(target);
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return [];
  }
  const found: Leftover[] = [];
  for (const name of names) {
    if (!name.startsWith(`${base}.`)) continue;
    const match = /^(tmp|old)-(\d+)-[a-z0-9]+$/.exec(name.slice(base.length + 1));
    if (!match) continue;
    const pid = Number(match[2]);
    if (pid !== process.pid && processAlive(pid)) continue;
    const full = path.join(parent, name);
    found.push({ path: full, kind: match[1] as 'tmp' | 'old', mtimeMs: statSync(full).mtimeMs });
  }
  return found;
}

/**
 * The directory holding the last complete version of `dir`: `dir` itself, or, when a crash hit
 * writeDirectoryAtomic between moving the previous version aside and moving the new one in,
 * that previous version (always complete). Undefined when there is none.
 */
export function lastCompleteDirectory(dir: string): string | undefined {
  if (existsSync(dir)) return dir;
  const previous = leftovers(dir)
    .filter((l) => l.kind === 'old')
    .sort((a, b) => b.mtimeMs - a.mtimeMs)[0];
  return previous?.path;
}
