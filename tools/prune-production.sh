#!/bin/sh
# Removes what a production install does not need at run time: type declarations, source maps,
# docs, and the sources and intermediates of native builds (only the built .node files load).
# The Dockerfile's runtime stage and the image size test run this same script.
set -eu
modules="${1:?usage: prune-production.sh <node_modules dir>}"
cd "$modules"
rm -rf @types
# TypeScript sources (Node 20 cannot load them) and builds for browsers and React Native.
find . -type f \( -name '*.ts' -o -name '*.tsx' -o -name '*.mts' -o -name '*.cts' -o -name '*.map' \
  -o -name '*.md' -o -name '*.markdown' -o -name '*.tsbuildinfo' \) -delete
find . -type d \( -path '*/dist/browser' -o -path '*/dist/react-native' -o -path '*/dist/esm-browser' \) -prune \
  -exec rm -rf {} +
# MSAL's browser implementation: @azure/identity (Snowflake's Azure workload identity) runs on
# @azure/msal-node under Node, and the image test imports every cloud SDK after this prune.
rm -rf @azure/msal-browser
for addon in zstd-napi; do
  [ -d "$addon" ] || continue
  rm -rf "$addon/deps" "$addon/src" "$addon/build/Release/obj.target" "$addon/build/Release/.deps" \
    "$addon/build/deps" "$addon/build/Release/zstd.a"
  find "$addon/build" -maxdepth 1 -type f -delete
done
