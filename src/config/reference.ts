/**
 * The configuration reference as Markdown, generated from the schema. docs/configuration.md
 * embeds it between markers; a test fails when the two differ (`nightshift config --reference`
 * prints it, `npm run docs` rewrites it).
 */
import { configKeys, configSections } from './keys.js';

export const REFERENCE_BEGIN = '<!-- config-reference:begin -->';
export const REFERENCE_END = '<!-- config-reference:end -->';

function formatDefault(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'object' && value !== null && Object.keys(value).length === 0) return '`{}`';
  return `\`${JSON.stringify(value)}\``;
}

export function configReference(): string {
  const sections = configSections();
  const lines: string[] = [];
  let current = '';
  for (const key of configKeys()) {
    const section = key.path.includes('.') ? key.path.slice(0, key.path.lastIndexOf('.')) : '';
    if (section !== current || lines.length === 0) {
      current = section;
      const title = section ? `\`${section}\`` : 'Top level';
      const about = section ? sections.get(section) : '';
      lines.push(
        '',
        `### ${title}${about ? `: ${about}` : ''}`,
        '',
        '| key | env | default | description |',
        '|---|---|---|---|',
      );
    }
    const required = key.required ? ' **Required.**' : '';
    const env = key.env ? `\`${key.env}\`` : '';
    const description = `${key.description}${required}`.replaceAll('|', '\\|');
    lines.push(`| \`${key.path}\` | ${env} | ${formatDefault(key.defaultValue)} | ${description} |`);
  }
  return `${REFERENCE_BEGIN}\n${lines.join('\n').trim()}\n${REFERENCE_END}`;
}
