#!/usr/bin/env bash
# Installs what the tests need, then runs every gate: rustfmt, clippy,
# building rkube, and all tests (unit, integration and e2e against the
# freshly built binary). Runs every step even after a failure and ends
# with one summary line; exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_rust
need_command curl curl
need_packages
need_command diff diffutils
if ! command -v kubectl >/dev/null 2>&1; then
    kubectl_help
    die "the e2e tests need kubectl"
fi
log "toolchain: $(rustc --version); $(kubectl version --client 2>/dev/null | head -1)"

export CARGO_TERM_COLOR=never
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
failed_steps=()

# step NAME MINUTES CMD...: runs CMD with a time limit, recording failure.
step() {
    local name=$1 minutes=$2
    shift 2
    log "$name: $*"
    local start=$SECONDS
    if timeout --kill-after=30 "${minutes}m" "$@"; then
        log "$name: ok ($((SECONDS - start))s)"
    else
        log "$name: FAILED ($((SECONDS - start))s)"
        failed_steps+=("$name")
    fi
}

step fmt 5 cargo fmt --all --check
step clippy 25 cargo clippy --workspace --all-targets -- -D warnings
step build 25 cargo build -p rkube -p rkube-testhelper

target_dir=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
export RKUBE_BIN="${target_dir:-target}/debug/rkube"
log "e2e tests use RKUBE_BIN=$RKUBE_BIN"

# Tests must not touch the user's clusters: the e2e harness gives every
# cluster its own RKUBE_HOME and KUBECONFIG; keep stray settings out.
unset RKUBE_PROFILE RKUBE_HOME
step test 40 bash -c 'set -o pipefail; cargo test --workspace --no-fail-fast 2>&1 | tee "$0"' "$log_dir/test.log"

passed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed;?$/) s += $i } END { print s + 0 }' "$log_dir/test.log" 2>/dev/null || echo 0)
failed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed;?$/) s += $i } END { print s + 0 }' "$log_dir/test.log" 2>/dev/null || echo 0)

echo
if [ "${#failed_steps[@]}" -eq 0 ]; then
    log "all steps passed"
else
    log "failed steps: ${failed_steps[*]}"
    grep -E '^test .* FAILED$' "$log_dir/test.log" 2>/dev/null | sed 's/^/    /' || true
fi
echo "summary: $passed passed, $failed failed"
[ "${#failed_steps[@]}" -eq 0 ]
