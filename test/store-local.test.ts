/** The shared ObjectStore suite on a local directory stage (`file:///...`). */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LocalStore } from '../src/store/local.js';
import { objectStoreSuite } from './helpers/store-suite.js';

objectStoreSuite(
  'local',
  async () => {
    const root = await mkdtemp(join(tmpdir(), 'nightshift-local-store-'));
    return {
      store: new LocalStore(pathToFileURL(root).href),
      dispose: () => rm(root, { recursive: true, force: true }),
    };
  },
  { largeFileBytes: 24 * 1024 * 1024, raceRounds: 25, verifiesChecksums: false },
);
