/**
 * The docs say what the code does: the configuration reference and every key in
 * docs/configuration.md, the exit code contract in README.md, and every relative link between the
 * pages leads to a file and a heading that exist.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configKeys } from '../src/config/keys.js';
import { configReference } from '../src/config/reference.js';
import { EXIT_CODES } from '../src/errors.js';

const root = join(import.meta.dirname, '..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const readme = read('README.md');
const configuration = read('docs/configuration.md');
const pages = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
];

/** The Markdown outside fenced code blocks, where headings and links mean something. */
function prose(markdown: string): string[] {
  let fenced = false;
  return markdown.split('\n').filter((line) => {
    if (line.startsWith('```')) fenced = !fenced;
    return !fenced && !line.startsWith('```');
  });
}

/** The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to `-`. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of prose(markdown)) {
    const heading = /^#{1,6} (.*)$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const slug = heading
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}_\- ]/gu, '')
      .replaceAll(' ', '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

/** Every relative link target of a page (code spans and code blocks left out). */
function relativeLinks(markdown: string): string[] {
  const text = prose(markdown)
    .join('\n')
    .replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)]
    .map((m) => m[1] as string)
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

describe('docs/configuration.md', () => {
  it('holds the generated configuration reference (npm run docs regenerates it)', () => {
    expect(configuration).toContain(configReference());
  });

  it('documents every configuration key', () => {
    for (const key of configKeys()) expect(configuration).toContain(`\`${key.path}\``);
  });

  it('maps every key to a distinct environment variable', () => {
    const envs = configKeys().flatMap((k) => (k.env ? [k.env] : []));
    expect(new Set(envs).size).toBe(envs.length);
  });
});

describe('README.md', () => {
  it('gives the exit code table of src/errors.ts', () => {
    for (const entry of Object.values(EXIT_CODES)) {
      expect(readme).toContain(
        `| ${entry.exit} | ${entry.meaning} | ${entry.exit === 0 ? '-' : entry.retry ? 'yes' : 'no'} |`,
      );
    }
  });
});

describe('links', () => {
  it.each(pages)('every relative link in %s leads to an existing file and heading', (page) => {
    const broken: string[] = [];
    for (const link of relativeLinks(read(page))) {
      const [path = '', anchor] = link.split('#');
      const target = path ? join(dirname(join(root, page)), decodeURIComponent(path)) : join(root, page);
      if (!existsSync(target)) {
        broken.push(`${link}: no file ${relative(root, target)}`);
      } else if (anchor && target.endsWith('.md') && !anchors(readFileSync(target, 'utf8')).has(anchor)) {
        broken.push(`${link}: no heading #${anchor} in ${relative(root, target)}`);
      }
    }
    expect(broken).toEqual([]);
  });
});
