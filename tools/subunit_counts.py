"""Count passed, failed and skipped tests in a subunit v2 stream.

Reads the stream on stdin (``stestr last --subunit``) and prints one line,
``N passed, N failed, N skipped``, counting what stestr counts: every
result of every worker, by its final status. A class fixture that fails in
two workers is two failures, although both carry the same test id.
Expected failures count as passed and unexpected successes as failed,
because that is how they decide the outcome of a stestr run. A test that
started but never finished (its worker died) counts as failed.
"""

import sys

import subunit
import testtools

PASSED = {'success', 'xfail'}
SKIPPED = {'skip'}


def final_statuses(stream):
    statuses = []

    def on_test(test):
        statuses.append(test['status'])

    result = testtools.StreamToDict(on_test)
    result.startTestRun()
    try:
        # Bytes that are not subunit (stray output of a worker) must not
        # abort the count.
        subunit.ByteStreamToStreamResult(
            stream, non_subunit_name='stdout').run(result)
    finally:
        result.stopTestRun()
    return statuses


def summarize(statuses):
    passed = failed = skipped = 0
    for status in statuses:
        if status in PASSED:
            passed += 1
        elif status in SKIPPED:
            skipped += 1
        else:
            failed += 1
    return passed, failed, skipped


def main():
    passed, failed, skipped = summarize(final_statuses(sys.stdin.buffer))
    print('%d passed, %d failed, %d skipped' % (passed, failed, skipped))


if __name__ == '__main__':
    main()
