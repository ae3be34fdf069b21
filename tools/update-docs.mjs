// Regenerates the configuration reference in docs/configuration.md from the schema (npm run docs).
import { readFileSync, writeFileSync } from 'node:fs';
import { configReference, REFERENCE_BEGIN, REFERENCE_END } from '../dist/src/config/reference.js';

const path = new URL('../docs/configuration.md', import.meta.url);
const page = readFileSync(path, 'utf8');
const start = page.indexOf(REFERENCE_BEGIN);
const end = page.indexOf(REFERENCE_END);
if (start < 0 || end < 0) throw new Error('docs/configuration.md has no config-reference markers');
writeFileSync(path, page.slice(0, start) + configReference() + page.slice(end + REFERENCE_END.length));
