#!/bin/sh
# Removes what a production install does not need at run time: type declarations, source maps,
# docs, and the sources and intermediates of native builds (only the built .node files load).
# The Dockerfile's runtime stage and the image size test run this same script.
set -eu
modules="${1:?usage: prune-production.sh <node_modules dir>}"
cd "$modules"
rm -rf @types
find . -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \
  -o -name '*.md' -o -name '*.markdown' \) -delete
for addon in zstd-napi; do
  [ -d "$addon" ] || continue
  rm -rf "$addon/deps" "$addon/src" "$addon/build/Release/obj.target" "$addon/build/Release/.deps" \
    "$addon/build/deps" "$addon/build/Release/zstd.a"
  find "$addon/build" -maxdepth 1 -type f -delete
done
