#!/usr/bin/env bash
#
# The long benchmarks (about an hour on a 2-core TCG host): prepare the
# host with setup-host.sh, then
#   1. the engine alone for each test guest, "nova-substrate bench
#      activation --guest tiny|debian|cloud" (for the cloud guest also the
#      time until the tenant's SSH key logs in and until user-data ran);
#   2. 1 to 16 simultaneous startups of the Debian guest from an image on
#      a bandwidth-limited NBD server, with and without a boot working-set
#      cache, "nova-substrate bench cache" (JSON and a plot in
#      bench-cache.json and bench-cache.png).
# Arguments are passed to the "bench activation" runs.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

bash "$ROOT/tools/setup-host.sh"
cd "$ROOT"

for guest in tiny debian cloud; do
    echo "run-benchmarks: nova-substrate bench activation --guest $guest $*"
    .venv/bin/nova-substrate bench activation --guest "$guest" "$@"
done

echo "run-benchmarks: nova-substrate bench cache --plot bench-cache.png"
.venv/bin/nova-substrate bench cache --json --plot bench-cache.png |
    tee bench-cache.json
