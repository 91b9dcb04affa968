#!/usr/bin/env bash
#
# The demonstration (a few minutes): prepare the host with setup-host.sh,
# then
#   1. measure instance activation against a normal boot in Nova's own
#      services (API, conductor, scheduler, placement, compute with
#      SubstrateDriver on this host's libvirtd), "nova-substrate bench nova";
#   2. measure the engine alone for the tiny busybox guest, "nova-substrate
#      bench activation --guest tiny".
# tools/run-benchmarks.sh runs the long benchmarks (the Debian and cloud
# guests, boot working-set caches).
# Arguments are passed to the "bench activation" run.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

bash "$ROOT/tools/setup-host.sh"
cd "$ROOT"

echo "run-demo: nova-substrate bench nova"
.venv/bin/nova-substrate bench nova

echo "run-demo: nova-substrate bench activation --guest tiny $*"
.venv/bin/nova-substrate bench activation --guest tiny "$@"
