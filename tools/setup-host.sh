#!/usr/bin/env bash
#
# Prepare this host for nova-substrate: Debian packages, the libvirt
# daemons, and .venv with the project installed. Runs as root on Debian 12
# from any directory, needs no terminal, and does nothing on a second run
# that the first one already did. Run it rather than source it: it exits on
# the first error.
#
# Environment:
#   PYTHON          interpreter for a new .venv (default: /usr/bin/python3)
#   LIBVIRT_WAIT    seconds to wait for libvirtd to answer (default: 60)

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
VENV=$ROOT/.venv
STAMP=$VENV/.nova-substrate-install.sha256
SOURCE_STAMP=$VENV/.nova-substrate-source.sha256
LIBVIRT_URI=qemu:///system
LIBVIRT_WAIT=${LIBVIRT_WAIT:-60}

PACKAGES=(
    qemu-system-x86 qemu-utils
    libvirt-daemon-system libvirt-dev libvirt-clients pkg-config
    linux-image-cloud-amd64 busybox-static qemu-guest-agent
    debootstrap cpio e2fsprogs
    # Nova's VIF driver makes tap devices with "ip" (functional tests).
    iproute2
    # Nova makes config drives with genisoimage; the tests log in to
    # guests with the tenant's key over ssh.
    genisoimage openssh-client
    # The cloud test guest boots with GRUB from its own disk.
    grub-pc-bin grub2-common
    gcc libc6-dev python3-venv
    # libvirt-python has no wheels: pip compiles it against these headers.
    python3-dev
)

say() {
    echo "setup-host: $*"
}

die() {
    echo "setup-host: error: $*" >&2
    exit 1
}

check_host() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts libvirtd)"
    if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
        die "needs a Debian host (dpkg-query and apt-get not found)"
    fi
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) != installed ]]; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        say "Debian packages: all present"
        return
    fi
    say "Debian packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists are refreshed only here: a host that has every
    # package never needs them, and a stale list is what makes an install
    # of a missing package fail.
    apt-get update -q >/dev/null || die "apt-get update failed"
    # confold: keep configuration files an administrator changed rather
    # than stopping on dpkg's question.
    apt-get install -y -q \
        -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >/dev/null || die "apt-get install failed"
}

# A daemon counts as running when the pid in its pid file is alive. This
# avoids relying on procps, which minimal Debian images lack.
daemon_running() {
    local pidfile=/run/$1.pid pid
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

start_libvirt() {
    local daemon
    # There is no systemd on these hosts: start the daemons directly.
    # virtlogd first, because libvirtd hands it each domain's console log.
    for daemon in virtlogd libvirtd; do
        if daemon_running "$daemon"; then
            say "$daemon: running"
        else
            say "$daemon: starting"
            "$daemon" -d || die "$daemon -d failed"
        fi
    done

    local waited=0 out
    until out=$(virsh -c "$LIBVIRT_URI" version 2>&1); do
        if ((waited >= LIBVIRT_WAIT)); then
            die "libvirtd did not answer on $LIBVIRT_URI within ${LIBVIRT_WAIT}s: $out"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "libvirt: $(echo "$out" | grep -m1 'Running hypervisor' || echo answering)"
}

# Everything that changes what "pip install" would install.
install_inputs_hash() {
    local file
    for file in requirements.txt test-requirements.txt setup.cfg pyproject.toml; do
        if [[ -f $ROOT/$file ]]; then
            echo "$file"
            cat "$ROOT/$file"
        fi
    done | sha256sum | cut -d' ' -f1
}

# The project's own files: a change to any of them is installed again.
# The install is a regular one, not editable: Nova loads compute drivers
# only from nova.virt, and only a regular install can put the project's
# nova/virt/substrate module there.
source_hash() {
    (cd "$ROOT" && find nova_substrate nova guest etc setup.cfg setup.py \
        pyproject.toml README.rst -type f ! -name '*.pyc' -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

venv_usable() {
    local shebang
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || return 1
    # A virtualenv copied or moved here from another path still runs, but
    # its scripts start the interpreter at the old path.
    shebang=$(head -n1 "$VENV/bin/pip" 2>/dev/null) || return 1
    [[ $shebang == "#!$VENV/bin/"* || $shebang == "#!/bin/sh" ]]
}

ensure_venv() {
    local python=${PYTHON:-/usr/bin/python3}
    if ! venv_usable; then
        # Missing, left half-made by an interrupted run, made by an
        # interpreter that is gone, or made for another path: start over.
        say "virtualenv: creating $VENV with $python"
        rm -rf "$VENV"
        "$python" -m venv "$VENV"
    fi

    local want have= want_source have_source=
    want=$(install_inputs_hash)
    want_source=$(source_hash)
    [[ -r $STAMP ]] && have=$(<"$STAMP")
    [[ -r $SOURCE_STAMP ]] && have_source=$(<"$SOURCE_STAMP")
    if [[ $want == "$have" && $want_source == "$have_source" ]]; then
        say "virtualenv: up to date"
        return
    fi

    # pbr takes the version from git. Without usable git metadata (an
    # unpacked tarball, or a checkout owned by another user, which git
    # refuses to read as root) give it one, so the install still works.
    if ! git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
        export PBR_VERSION=${PBR_VERSION:-0.0.0}
        say "virtualenv: no usable git metadata, installing as version $PBR_VERSION"
    fi
    if [[ $want != "$have" ]]; then
        say "virtualenv: installing requirements (a few minutes the first time)"
        (cd "$ROOT" && "$VENV/bin/python" -m pip install -q \
            -r requirements.txt -r test-requirements.txt) ||
            die "pip install of the requirements failed"
        echo "$want" >"$STAMP"
    fi
    say "virtualenv: installing nova-substrate"
    # An earlier editable install would shadow the regular one.
    "$VENV/bin/python" -m pip uninstall -q -y nova-substrate >/dev/null 2>&1 || true
    (cd "$ROOT" && "$VENV/bin/python" -m pip install -q --no-deps .) ||
        die "pip install of nova-substrate failed"
    echo "$want_source" >"$SOURCE_STAMP"
}

check_host
install_packages
start_libvirt
ensure_venv
say "ready"
