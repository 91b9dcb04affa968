"""nova-substrate bench activation, end to end on real libvirt."""

import contextlib
import io
import json

import testtools

from nova_substrate.cmd import main as cmd_main
from tests.integration import base


class ActivationBenchTest(testtools.TestCase):

    def test_json_report(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = cmd_main.main(['bench', 'activation', '--json', '--guest',
                                'tiny', '--runs', '1', '--clones', '2'])
        self.addCleanup(cmd_main.CONF.reset)
        self.assertEqual(0, rc)
        report = json.loads(out.getvalue())
        for field in ('boot_s', 'activate_s', 'running_s', 'libvirt_floor_s',
                      'ratio', 'clones', 'concurrent_s', 'substrate_bytes',
                      'flavor_ram_mb'):
            self.assertIn(field, report)
        self.assertEqual(2, report['clones'])
        self.assertEqual(512, report['flavor_ram_mb'])
        self.assertGreater(report['boot_s'], 0)
        # the numbers hang together: running before ready, the docked
        # state a part of RAM
        self.assertLess(report['running_s'], report['activate_s'])
        self.assertLess(report['substrate_bytes'], 512 * 2 ** 20)
        self.assertAlmostEqual(report['boot_s'] / report['activate_s'],
                               report['ratio'], places=1)
        # the benchmark leaves nothing running
        names = [d.name() for d in base.connect().listAllDomains()]
        self.assertEqual([], [n for n in names if n.startswith('bench-')])
