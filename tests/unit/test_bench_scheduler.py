"""bench scheduler on a few hosts: the shape of its result, not its times.

No timing is asserted: the benchmark reports times, the host decides
them.
"""

import contextlib
import io
import json

import fixtures
from nova import objects
import testtools

from nova_substrate.bench import scheduler as scheduler_bench
from nova_substrate.cmd import main as cmd_main
from nova_substrate.virt import reporting

HOSTS = [10, 50]
REQUESTS = 3
PER_HOST_COUNT = ('median_us', 'p90_us', 'filter_median_us',
                  'weigh_median_us')


class BenchSchedulerTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # Specs without a context need no BuildRequest lookup: were one
        # made, or any database opened, these would see it.
        self.lookup = self.useFixture(fixtures.MockPatchObject(
            objects.BuildRequest, 'get_by_instance_uuid')).mock
        self.db = self.useFixture(fixtures.MockPatch(
            'oslo_db.sqlalchemy.enginefacade._TransactionFactory._start')
        ).mock

    def assertNoDatabase(self):
        self.lookup.assert_not_called()
        self.db.assert_not_called()

    def assertResult(self, result):
        self.assertEqual(HOSTS, result['hosts'])
        self.assertEqual(REQUESTS, result['requests'])
        self.assertIsInstance(result['measured'], str)
        for name in ('median_us', 'p90_us'):
            self.assertEqual(len(HOSTS), len(result[name]))
            for value in result[name]:
                self.assertGreater(value, 0)
        self.assertEqual(result['kinds']['substrate']['median_us'],
                         result['median_us'])
        self.assertEqual(set(scheduler_bench.KINDS), set(result['kinds']))
        for kind, r in result['kinds'].items():
            for name in PER_HOST_COUNT:
                self.assertEqual(len(HOSTS), len(r[name]), (kind, name))
                for value in r[name]:
                    self.assertGreater(value, 0, (kind, name))
        # Only the hosts holding the key are kept for a substrate flavor;
        # every host otherwise.
        self.assertEqual(result['hosts_holding'],
                         result['kinds']['substrate']['kept_hosts'])
        for count in result['hosts_holding']:
            self.assertGreater(count, 0)
        for kind in ('substrate_fallback', 'normal'):
            self.assertEqual(HOSTS, result['kinds'][kind]['kept_hosts'])
        for values in result['reference'].values():
            self.assertEqual(len(HOSTS), len(values))
            for value in values:
                self.assertGreater(value, 0)

    def test_run(self):
        result = scheduler_bench.run(HOSTS, REQUESTS)
        self.assertResult(result)
        self.assertNoDatabase()
        summary = scheduler_bench.summary(result)
        self.assertIn('substrate_fallback', summary)
        self.assertIn('RAMWeigher', summary)

    def test_hosts(self):
        key = scheduler_bench.request_key(scheduler_bench.SUBSTRATE)
        hosts = scheduler_bench.make_hosts(100, key)
        self.assertEqual(100, len({h.host for h in hosts}))
        holding = [h for h in hosts
                   if reporting.ready_from_stats(h.stats).get(key, 0) > 0]
        self.assertEqual(5, len(holding))
        substrate_hosts = [h for h in hosts
                           if reporting.HOST_STAT in h.stats]
        self.assertEqual(30, len(substrate_hosts))
        warm = [h for h in hosts if reporting.cache_is_warm(
            h.stats, scheduler_bench.IMAGE_ID)]
        self.assertEqual(15, len(warm))
        for h in hosts:
            self.assertGreaterEqual(len(h.stats),
                                    scheduler_bench.STATS_PER_HOST)
            for value in h.stats.values():
                self.assertIsInstance(value, str)
        # Seeded: the same hosts every time.
        again = scheduler_bench.make_hosts(100, key)
        self.assertEqual([(h.host, h.stats) for h in hosts],
                         [(h.host, h.stats) for h in again])


class BenchSchedulerCommandTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(cmd_main.CONF.reset)
        self.addCleanup(cmd_main.CONF.clear)

    def run_cli(self, *args):
        out = io.StringIO()
        err = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cmd_main.main(list(args))
        return rc, out.getvalue(), err.getvalue()

    def test_json(self):
        rc, out, _ = self.run_cli('bench', 'scheduler', '--json', '--hosts',
                                  '10,50', '--requests', str(REQUESTS))
        self.assertEqual(0, rc)
        result = json.loads(out)
        self.assertEqual(HOSTS, result['hosts'])
        self.assertEqual(REQUESTS, result['requests'])
        for value in result['median_us'] + result['p90_us']:
            self.assertGreater(value, 0)

    def test_summary(self):
        rc, out, _ = self.run_cli('bench', 'scheduler', '--hosts', '10',
                                  '--requests', '1')
        self.assertEqual(0, rc)
        self.assertIn('10 hosts', out)
        self.assertIn('median', out)

    def test_bad_arguments(self):
        for hosts in ('ten', '10,,50', '0', ''):
            e = self.assertRaises(SystemExit, self.run_cli, 'bench',
                                  'scheduler', '--hosts', hosts)
            self.assertEqual(2, e.code)
        rc, _, err = self.run_cli('bench', 'scheduler', '--requests', '0')
        self.assertEqual(1, rc)
        self.assertIn('--requests', err)
