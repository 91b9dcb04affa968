"""nova-substrate bench cache, end to end on real libvirt and QEMU.

One recording boot of the Debian guest, then replays of its reads, one
and two at once, through each chain. A replay lasts as long as the
recording boot did, so the test takes about five boots' time: two to four
minutes on a TCG host. Booting one and two guests at once on each chain
as well would about double that, so the boot mode is left to the command.
"""

import contextlib
import io
import json
import os
import shutil
import tempfile

import testtools

from nova_substrate.bench import cache as cache_bench
from nova_substrate.cmd import main as cmd_main
from tests.integration import base

MiB = 2 ** 20
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _bench_processes(work_path):
    """Command lines of processes still using a bench cache directory."""
    left = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                cmdline = f.read().replace(b'\0', b' ')
        except OSError:
            continue
        if os.path.join(work_path, 'cache-').encode() in cmdline:
            left.append(cmdline.decode(errors='replace'))
    return left


class CacheBenchTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.out_dir = tempfile.mkdtemp(prefix='bench-cache-test-')
        self.addCleanup(shutil.rmtree, self.out_dir, ignore_errors=True)
        self.addCleanup(cmd_main.CONF.reset)

    def run_bench(self, *args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = cmd_main.main(['bench', 'cache', '--json'] + list(args))
        self.assertEqual(0, rc)
        return json.loads(out.getvalue())

    def test_replays_json_and_plot(self):
        plot = os.path.join(self.out_dir, 'startup.png')
        report = self.run_bench('--counts', '1,2', '--no-boot',
                                '--plot', plot)

        for field in ('server', 'limit', 'bandwidth_mbps', 'image_bytes',
                      'cache_bytes', 'working_set_bytes',
                      'recording_boot_s', 'counts', 'results', 'ratios',
                      'cache_fraction', 'targets'):
            self.assertIn(field, report)
        self.assertEqual([1, 2], report['counts'])
        mbps = cache_bench.DEFAULT_BANDWIDTH_MBPS
        self.assertEqual(mbps, report['bandwidth_mbps'])
        self.assertIn('%d bytes/s' % (mbps * 10 ** 6 // 8), report['limit'])
        self.assertFalse(report['boot'])
        # The remote serves the qcow2 file Nova would download; the cache
        # holds the boot's working set, a part of it.
        self.assertGreater(report['image_bytes'], 100 * MiB)
        self.assertGreater(report['working_set_bytes'], 10 * MiB)
        self.assertGreaterEqual(report['cache_bytes'],
                                report['working_set_bytes'])
        self.assertLess(report['cache_bytes'], report['image_bytes'])
        self.assertAlmostEqual(
            report['cache_bytes'] / report['image_bytes'],
            report['cache_fraction'], places=3)
        self.assertGreater(report['recording_boot_s'], 0)

        self.assertEqual([1, 2], [r['n'] for r in report['results']])
        for row in report['results']:
            self.assertIsNone(row['no_cache_s'])
            self.assertIsNone(row['cache_s'])
            self.assertGreater(row['replay_no_cache_s'], 0)
            self.assertGreater(row['replay_cache_s'], 0)
            per_boot = row['remote_bytes_per_boot']
            self.assertEqual(row['replay_remote_bytes_per_boot'], per_boot)
            # Without the cache every startup reads its working set from
            # the remote; with it, next to nothing.
            self.assertGreater(per_boot['no_cache'], 10 * MiB)
            self.assertLess(per_boot['cache'], per_boot['no_cache'] * 0.05,
                            row)

        ratios = report['ratios']
        self.assertIsNone(ratios['boot_cache'])
        self.assertIsNone(ratios['boot_no_cache'])
        rows = report['results']
        self.assertAlmostEqual(
            rows[1]['replay_cache_s'] / rows[0]['replay_cache_s'],
            ratios['replay_cache'], places=2)
        self.assertGreater(ratios['replay_no_cache'], 0)
        self.assertEqual({'replay_cache_ratio', 'cache_fraction'},
                         set(report['targets']))
        for met in report['targets'].values():
            self.assertIsInstance(met, bool)

        with open(plot, 'rb') as f:
            self.assertEqual(PNG_SIGNATURE, f.read(8))

        # The benchmark leaves nothing behind: domains, daemons, files.
        names = [d.name() for d in base.connect().listAllDomains()]
        self.assertEqual([], [n for n in names
                              if n.startswith('bench-cache-')])
        work_path = cmd_main.CONF.substrate_bench.work_path
        self.assertEqual([], _bench_processes(work_path))
        self.assertEqual([], [d for d in os.listdir(work_path)
                              if d.startswith('cache-')])
