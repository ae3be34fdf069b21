#!/bin/sh
# `npm ci "$@"` in the current folder. The registry this project's machines reach lacks some
# packages that the lockfile's dependencies list as optional for other platforms (macOS,
# Windows, musl builds of biome, DuckDB and rollup), so npm ci refuses the lockfile ("Missing:
# <name>@ from lock file", with no version: npm could not resolve them at all). Only in exactly
# that case, npm install installs the same tree from the same lockfile; any other refusal fails.
set -eu
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if npm ci --no-audit --no-fund "$@" 2>"$log"; then
  exit 0
fi
if grep -q 'Missing: .* from lock file' "$log" && ! grep 'Missing: ' "$log" | grep -qv '@ from lock file'; then
  echo "npm ci: the registry lacks $(grep -c 'Missing: ' "$log") optional packages of other platforms; npm install from the same lockfile" >&2
  exec npm install --no-audit --no-fund "$@"
fi
cat "$log" >&2
exit 1
