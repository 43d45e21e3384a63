# Shared helpers for scripts/*.sh (sourced, not run).
# Installs only what rkube needs at this stage; the Rust toolchain must exist.

log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs apt-get non-interactively when we are root on a Debian/Ubuntu host.
apt_install() {
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        return 1
    fi
    if [ -z "${RKUBE_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >/dev/null || return 1
        RKUBE_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null >/dev/null
}

# Makes sure command $1 exists, installing Debian package $2 if it does not.
need_command() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    log "installing $pkg (for $cmd)"
    apt_install "$pkg" || die "$cmd is missing and could not be installed; install the $pkg package"
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd is still missing after installing $pkg"
}

need_rust() {
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (>= 1.85) with rustup first"
}

# How to get kubectl; it is not in Debian's archive.
kubectl_help() {
    cat >&2 <<'MSG'
kubectl was not found on PATH. rkube serves the Kubernetes API; kubectl is its client.
Get kubectl (v1.30 or newer) from the Kubernetes project, for example:
  curl -LO "https://dl.k8s.io/release/$(curl -Ls https://dl.k8s.io/release/stable.txt)/bin/linux/amd64/kubectl"
  install -m 0755 kubectl /usr/local/bin/kubectl
or from the pkgs.k8s.io apt repository (package "kubectl"), then run this script again.
MSG
}

# Debian packages rkube uses: protoc to build the CRI bindings; the
# container runtimes and their helpers; the standard CNI plugins; tools the
# tests use to build and serve images.
RKUBE_DEBIAN_PACKAGES="protobuf-compiler containerd runc crun conmon containernetworking-plugins iptables busybox-static skopeo umoci docker-registry docker.io ca-certificates"

# Installs every missing package of RKUBE_DEBIAN_PACKAGES.
need_packages() {
    local missing=()
    for p in $RKUBE_DEBIAN_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    apt_install "${missing[@]}" || die "could not install ${missing[*]}; install them with apt-get (as root) and run this script again"
    # docker-registry starts a system service on port 5000; the tests start their own.
    # docker.io starts a system dockerd; rkube runs its own per profile.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now docker-registry >/dev/null 2>&1 || true
        systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true
    fi
}
