#!/usr/bin/env bash
#
# The demonstration: prepare the host with setup-host.sh, then
#   1. measure instance activation against a normal boot in Nova's own
#      services (API, conductor, scheduler, placement, compute with
#      SubstrateDriver on this host's libvirtd), "nova-substrate bench nova";
#   2. measure the engine alone for the tiny busybox guest and for the
#      Debian guest, "nova-substrate bench activation";
#   3. measure 1 to 16 simultaneous startups of the Debian guest from an
#      image on a bandwidth-limited NBD server, with and without a boot
#      working-set cache, "nova-substrate bench cache" (JSON and a plot in
#      bench-cache.json and bench-cache.png).
# Arguments are passed to the "bench activation" runs.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

bash "$ROOT/tools/setup-host.sh"
cd "$ROOT"

echo "run-demo: nova-substrate bench nova"
.venv/bin/nova-substrate bench nova

for guest in tiny debian; do
    echo "run-demo: nova-substrate bench activation --guest $guest $*"
    .venv/bin/nova-substrate bench activation --guest "$guest" "$@"
done

echo "run-demo: nova-substrate bench cache --plot bench-cache.png"
.venv/bin/nova-substrate bench cache --json --plot bench-cache.png |
    tee bench-cache.json
