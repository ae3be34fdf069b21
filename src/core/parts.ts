/**
 * How big a part file is and how much of temp_dir the parts of a run take: the one rule the run
 * (which writes the parts) and `nightshift check` (which predicts the space) both follow.
 */
import type { Config } from '../config/schema.js';
import { configError, type NightshiftError } from '../errors.js';

const MiB = 2 ** 20;

/** Part size when neither parquet.part_size_mb nor the warehouse says otherwise. */
export const DEFAULT_PART_MB = 256;

/** Parts on disk at once: the one being written and the uploads in flight (src/run/uploader.ts). */
export const PARTS_ON_DISK = 3;

/** Room kept beyond the parts themselves: a part closes after the row group that fills it. */
const MARGIN = 1.1;

/** A part's size in bytes: parquet.part_size_mb, else the warehouse's preference, else 256 MiB. */
export function partBytes(config: Config, preferredPartMb: number | undefined): number {
  return (config.parquet.part_size_mb ?? preferredPartMb ?? DEFAULT_PART_MB) * MiB;
}

/** temp_dir a run needs for its parts: PARTS_ON_DISK of them, less when the whole export is smaller. */
export function tempSpaceNeeded(part: number, exportBytes: number | undefined): number {
  return Math.min(PARTS_ON_DISK * part, exportBytes ?? Number.POSITIVE_INFINITY) * MARGIN;
}

/** ENOSPC from the part writer (its writes carry no path, unlike a full stage's) means temp_dir is full. */
export function noSpaceForParts(err: unknown, tempDir: string, part: number): NightshiftError | undefined {
  const e = err as NodeJS.ErrnoException | undefined;
  if (e?.code !== 'ENOSPC' || e.path) return undefined;
  const partMb = Math.round(part / MiB);
  return configError(
    `temp_dir ${tempDir} is full: no space left for part files (parts of ${partMb} MiB, up to ${PARTS_ON_DISK} on disk at once)`,
    {
      cause: err,
      hint: `give ${tempDir} at least ${Math.ceil(tempSpaceNeeded(part, undefined) / MiB)} MiB (the emptyDir sizeLimit), or lower parquet.part_size_mb; nightshift check estimates what a run needs`,
    },
  );
}
