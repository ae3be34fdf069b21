/**
 * The temp dir a run writes its parts under: created when missing. A directory that cannot be
 * made or written (a read-only root filesystem without its emptyDir, a path under a file, no
 * permission) is a configuration matter, exit 2 with the mount fix, the same from `run` as from
 * `check`; a retry would meet it again.
 */
import { mkdir } from 'node:fs/promises';
import { configError } from '../errors.js';

const NOT_WRITABLE = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EEXIST']);

export function notWritable(dir: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (!code || !NOT_WRITABLE.has(code)) return err as Error;
  return configError(`temp_dir ${dir} is not writable: ${(err as Error).message}`, {
    cause: err,
    hint: 'mount a writable volume there (an emptyDir at /tmp in Kubernetes) or set temp_dir',
  });
}

/** Creates `dir` (and its parents) as mkdir -p does, or throws notWritable's config error. */
export async function makeTempDir(dir: string, mode?: number): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode });
  } catch (err) {
    throw notWritable(dir, err);
  }
}
