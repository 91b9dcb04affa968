"""The nova-substrate command line on a pool of its own."""

import contextlib
import io
import json
import os

import fixtures
import testtools

from nova_substrate.cmd import main as cmd_main
from nova_substrate.engine import pool as pool_mod
from tests.unit.engine import fakes


class CommandLineTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.conf = os.path.join(root, 'nova-substrate.conf')
        with open(self.conf, 'w') as f:
            f.write('[substrate]\npool_path = %s/pool\nlayer_path = %s/layers'
                    '\nmemory_budget_mb = 0\n' % (root, root))
        self.pool = pool_mod.SubstratePool(root + '/pool', root + '/layers',
                                           0)
        self.addCleanup(cmd_main.CONF.reset)
        self.addCleanup(cmd_main.CONF.clear)

    def run_cli(self, *args):
        out = io.StringIO()
        err = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cmd_main.main(['--config-file', self.conf] + list(args))
        return rc, out.getvalue(), err.getvalue()

    def dock(self, key):
        return fakes.dock(self.pool, key, labels={'guest': 'tiny'})

    def test_list_empty(self):
        rc, out, _ = self.run_cli('pool', 'list')
        self.assertEqual(0, rc)
        self.assertIn('no substrates', out)
        rc, out, _ = self.run_cli('pool', 'list', '--json')
        self.assertEqual([], json.loads(out))

    def test_fill_list_and_recover(self):
        self.dock('ab' * 16)
        rc, out, _ = self.run_cli('pool', 'fill', 'ab' * 16, '--count', '3')
        self.assertEqual(0, rc)
        self.assertIn('3 substrates added', out)
        rc, out, _ = self.run_cli('pool', 'list', '--json')
        [row] = json.loads(out)
        self.assertEqual(3, row['ready'])
        self.assertEqual({'guest': 'tiny'}, row['labels'])
        rc, out, _ = self.run_cli('pool', 'list')
        self.assertIn('ab' * 16, out)
        self.assertIn('guest=tiny', out)
        rc, out, _ = self.run_cli('pool', 'recover')
        self.assertEqual(['ab' * 16], json.loads(out)['adopted'])

    def test_invalid_option_names_it(self):
        with open(self.conf, 'a') as f:
            f.write('hook_path = relative/hook\n')
        rc, _, err = self.run_cli('pool', 'list')
        self.assertEqual(2, rc)
        self.assertIn('[substrate] hook_path', err)

    def test_fill_unknown_key(self):
        rc, _, err = self.run_cli('pool', 'fill', 'cd' * 16)
        self.assertEqual(1, rc)
        self.assertIn('no template', err)
