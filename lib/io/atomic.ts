// Writes that never leave a half-written file or directory behind: write beside the target
// under a temporary name, flush to disk, then rename over it.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
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

/**
 * Replaces directory `dir` with one holding exactly `files` (name -> contents). The new
 * directory is written completely under a temporary name first; the previous one is kept
 * until the new one is in place, so an interruption leaves one complete version on disk.
 */
export function writeDirectoryAtomic(dir: string, files: Record<string, Uint8Array | string>): void {
  const tmp = temporaryName(dir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  try {
    for (const [name, data] of Object.entries(files)) {
      if (name.includes('/') || name.includes('\\') || name === '' || name.startsWith('.')) {
        throw new Error(`writeDirectoryAtomic: invalid file name ${JSON.stringify(name)}`);
      }
      writeAndSync(path.join(tmp, name), data);
    }
    syncDirectory(tmp);
    if (existsSync(dir)) {
      const old = temporaryName(dir, 'old');
      renameSync(dir, old);
      renameSync(tmp, dir);
      syncDirectory(path.dirname(dir));
      rmSync(old, { recursive: true, force: true });
    } else {
      mkdirSync(path.dirname(dir), { recursive: true });
      renameSync(tmp, dir);
      syncDirectory(path.dirname(dir));
    }
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
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
 * Temporary and previous versions of `target` that processes which have since died left beside
 * it (a write interrupted by a crash); those of live processes may still be in use.
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
    if (pid === process.pid || processAlive(pid)) continue;
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
