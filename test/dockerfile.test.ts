/**
 * The Dockerfile, read as text (no engine runs here): what it promises, and that the build
 * context .dockerignore leaves holds everything it copies.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const stages = dockerfile.split(/^FROM /m).slice(1);
const runtime = stages[stages.length - 1];
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };

describe('Dockerfile', () => {
  it('builds in stages: compiler, production dependencies, distroless runtime', () => {
    expect(stages).toHaveLength(3);
    expect(stages[0]).toMatch(/RUN npm ci\b(?!.*--omit)/);
    expect(stages[0]).toContain('RUN npm run build');
    expect(stages[1]).toContain('npm ci --omit=dev');
    expect(stages[1]).toContain('sh tools/prune-production.sh node_modules');
    expect(runtime).toMatch(/^gcr\.io\/distroless\/nodejs\$\{NODE_MAJOR\}-debian12:nonroot/);
    // The runtime gets production node_modules and the compiled code, nothing from the build stage's node_modules.
    expect(runtime).toContain('COPY --from=deps /app/node_modules ./node_modules');
    expect(runtime).not.toMatch(/COPY --from=build \S*node_modules/);
  });

  it('runs on Node 24, the current LTS, within package.json engines, on one Debian release throughout', () => {
    const major = Number(/^ARG NODE_MAJOR=(\d+)$/m.exec(dockerfile)?.[1]);
    expect(major).toBe(24);
    // engines names the oldest maintained line (22); the image runs a newer one.
    const floor = Number(/^>=(\d+)$/.exec(pkg.engines.node)?.[1]);
    expect(floor).toBe(22);
    expect(major).toBeGreaterThanOrEqual(floor);
    // Native addons are built in the Debian 12 (bookworm) stages for the Debian 12 runtime's glibc.
    for (const stage of stages.slice(0, -1)) expect(stage).toMatch(/^node:\$\{NODE_MAJOR\}-bookworm AS /);
    expect(runtime).toMatch(/^gcr\.io\/distroless\/nodejs\$\{NODE_MAJOR\}-debian12:/);
  });

  it('runs nightshift run as a non-root numeric user in UTC, with tuned malloc and OCI labels', () => {
    expect(runtime).toMatch(/^ENTRYPOINT \["nightshift"\]$/m);
    expect(runtime).toMatch(/^CMD \["run"\]$/m);
    const user = /^USER (\d+):(\d+)$/m.exec(runtime);
    expect(Number(user?.[1])).toBeGreaterThan(0);
    expect(runtime).toMatch(/TZ=UTC/);
    // glibc malloc tuned so that freed buffers go back to the kernel (peak RSS, docs/performance.md).
    expect(runtime).toMatch(/MALLOC_ARENA_MAX=2\b/);
    expect(runtime).toMatch(/MALLOC_MMAP_THRESHOLD_=131072\b/);
    for (const label of ['title', 'version', 'revision', 'created', 'licenses', 'base.name'])
      expect(runtime).toContain(`org.opencontainers.image.${label}=`);
    // ARGs before the first FROM are not visible inside a stage unless declared again.
    for (const arg of runtime.matchAll(/\$\{(\w+)\}/g))
      expect(runtime).toMatch(new RegExp(`^ARG ${arg[1]}\\b`, 'm'));
  });

  it('copies only what .dockerignore lets into the build context', () => {
    const allowed = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1).replace(/\/$/, ''));
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(?:--\S+ )*(.+) \S+$/gm)].flatMap((m) =>
      m[1].split(' '),
    );
    expect(sources.length).toBeGreaterThan(5);
    for (const source of sources) {
      const path = source.replace(/\/$/, '');
      expect(
        allowed.some((a) => path === a || path.startsWith(`${a}/`)),
        source,
      ).toBe(true);
    }
  });
});
