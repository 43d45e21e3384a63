#!/usr/bin/env bash
# Installs what rkube needs, builds the release binary and starts a cluster.
# Extra arguments go to `rkube start`, e.g. --profile dev --apiserver-port 9443.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_rust
need_command curl curl
need_packages
if ! command -v kubectl >/dev/null 2>&1; then
    kubectl_help
    log "continuing without kubectl: the cluster starts, but you need kubectl to use it"
fi

log "building rkube (release)"
cargo build --release -p rkube

log "starting rkube"
target/release/rkube start "$@"

cat <<'MSG'

Next:
  kubectl get namespaces
  target/release/rkube status
  target/release/rkube stop        # or: rkube delete
MSG
