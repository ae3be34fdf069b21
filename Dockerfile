# syntax=docker/dockerfile:1.7
#
# nightshift's image: a build stage with the compiler, a stage with the production dependencies
# only, and a distroless runtime (no shell, no package manager) running as a non-root user.
#
#   docker build -t nightshift:dev .
#   docker run --rm nightshift:dev --version
#
# Node 24, the current LTS (maintained until April 2028); Node 20 reached its end of life in April
# 2026. Every native addon (DuckDB's, zstd-napi) is N-API, so the same install runs on any major.
#
# Size budget: <= 275 MB uncompressed (250 MB on Node 20). The runtime base (distroless nodejs24:
# glibc, libstdc++, CA certificates, the node binary) is about 160 MB: Node 24's binary alone is
# 127 MB (Node 20's was 99 MB). The production install (npm ci --omit=dev, pruned by
# tools/prune-production.sh) plus dist/ must stay under the rest, 115 MB as before.
# test/pod.test.ts measures that install (113 MB now) against 275 MB minus a 160 MB base
# allowance, since no Docker engine runs in the test environment. The bulk of the install is
# DuckDB's libduckdb.so (about 70 MB).

ARG NODE_MAJOR=24

FROM node:${NODE_MAJOR}-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bench ./bench
RUN npm run build

FROM node:${NODE_MAJOR}-bookworm AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY tools/prune-production.sh ./tools/
# Native addons (zstd-napi) compile here against bookworm's glibc, the runtime's glibc.
RUN npm ci --omit=dev --no-audit --no-fund && sh tools/prune-production.sh node_modules

FROM gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot
ARG NODE_MAJOR
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="nightshift" \
      org.opencontainers.image.description="Scheduled PostgreSQL to Parquet to warehouse exports, run as a Kubernetes CronJob" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot"
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY package.json ./
COPY --chmod=0755 docker/nightshift /usr/local/bin/nightshift
# UTC whatever the node's zone; part files and DuckDB spill go under /tmp (an emptyDir).
# glibc's malloc with two arenas rather than one per thread (DuckDB's, libuv's), and blocks from
# 128 KiB up mapped and unmapped directly, so that freed buffers go back to the kernel: a
# 5M-row run into DuckDB peaks 20-30 MB lower at the same speed (npm run bench runs without them).
ENV TZ=UTC \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072 \
    NODE_ENV=production \
    PATH=/usr/local/bin:/nodejs/bin:/usr/bin:/bin
# distroless "nonroot": numeric, so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["nightshift"]
CMD ["run"]
