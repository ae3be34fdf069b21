// Regenerates the configuration reference in README.md from the schema (npm run docs).
import { readFileSync, writeFileSync } from 'node:fs';
import { configReference, REFERENCE_BEGIN, REFERENCE_END } from '../dist/src/config/reference.js';

const path = new URL('../README.md', import.meta.url);
const readme = readFileSync(path, 'utf8');
const start = readme.indexOf(REFERENCE_BEGIN);
const end = readme.indexOf(REFERENCE_END);
if (start < 0 || end < 0) throw new Error('README.md has no config-reference markers');
writeFileSync(path, readme.slice(0, start) + configReference() + readme.slice(end + REFERENCE_END.length));
