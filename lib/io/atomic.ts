// Writes that never leave a half-written file or directory behind: write beside the target
// under a temporary name, flush to disk, then rename over it.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';

function temporaryName(target: string, kind: string): string {
  return `${target}.${kind}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
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
    if (existsSync(dir)) {
      const old = temporaryName(dir, 'old');
      renameSync(dir, old);
      renameSync(tmp, dir);
      rmSync(old, { recursive: true, force: true });
    } else {
      mkdirSync(path.dirname(dir), { recursive: true });
      renameSync(tmp, dir);
    }
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
