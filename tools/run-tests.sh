#!/usr/bin/env bash
#
# Run the whole test suite (tests/unit, tests/functional, tests/integration)
# with stestr from .venv, after preparing the host with setup-host.sh.
# Arguments are passed to "stestr run" (for example a test filter regex).
# The last line printed is "N passed, N failed, N skipped"; the exit status
# is stestr's.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
VENV=$ROOT/.venv
CONCURRENCY=${STESTR_CONCURRENCY:-2}

bash "$ROOT/tools/setup-host.sh"
cd "$ROOT"

# stestr stores a run only when tests actually ran; after a failed test
# discovery "stestr last" would still show the previous run. The run
# counter tells the two apart.
next_run() {
    cat .stestr/next-stream 2>/dev/null || echo none
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT

[[ -d .stestr ]] || "$VENV/bin/stestr" init >/dev/null
before=$(next_run)
echo "run-tests: stestr run --concurrency $CONCURRENCY${*:+ $*}"
set +e
"$VENV/bin/stestr" run --concurrency "$CONCURRENCY" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
echo

if [[ $(next_run) != "$before" ]]; then
    if ! counts=$("$VENV/bin/stestr" last --subunit |
                  "$VENV/bin/python" "$ROOT/tools/subunit_counts.py"); then
        echo "run-tests: could not count the results of the stored run"
        exit $((status != 0 ? status : 1))
    fi
else
    # Nothing ran. Each test module that failed to import is one failure;
    # with none, no test was found at all.
    import_errors=$(grep -c '^Failed to import test module:' "$log" || true)
    if ((import_errors > 0)); then
        echo "run-tests: test discovery failed, no test ran (import errors above)"
    elif (($# > 0)); then
        echo "run-tests: no test matched: $*"
    else
        echo "run-tests: no tests found under tests/"
    fi
    counts="0 passed, $import_errors failed, 0 skipped"
fi

if ((status != 0)); then
    echo "run-tests: stestr exited with status $status"
fi
echo "$counts"
exit "$status"
