#!/usr/bin/env bash
#
# The demonstration: prepare the host with setup-host.sh, then measure
# instance activation for the tiny busybox guest and for the Debian guest.
# Arguments are passed to both "nova-substrate bench activation" runs.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

bash "$ROOT/tools/setup-host.sh"
cd "$ROOT"

for guest in tiny debian; do
    echo "run-demo: nova-substrate bench activation --guest $guest $*"
    .venv/bin/nova-substrate bench activation --guest "$guest" "$@"
done
