"""nova-substrate pool build / list / evict on real libvirt."""

import contextlib
import io
import json
import os
import shutil
import tempfile

from nova_substrate.cmd import main as cmd_main
from tests.integration import base


class PoolCommandsTest(base.LibvirtTestCase):

    def setUp(self):
        super().setUp()
        self.pool_path = tempfile.mkdtemp(prefix='nova-substrate-cli-',
                                          dir='/dev/shm')
        self.addCleanup(shutil.rmtree, self.pool_path, ignore_errors=True)
        self.layers = os.path.join(self.work, 'layers')
        self.conf = os.path.join(self.work, 'nova-substrate.conf')
        with open(self.conf, 'w') as f:
            f.write('[substrate]\npool_path = %s\nlayer_path = %s\n'
                    '[substrate_bench]\nwork_path = %s\n'
                    'guest_cache_dir = %s\n'
                    % (self.pool_path, self.layers, self.work,
                       base.GUEST_CACHE))
        self.addCleanup(cmd_main.CONF.reset)

    def cli(self, *args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = cmd_main.main(['--config-file', self.conf] + list(args))
        self.assertEqual(0, rc, out.getvalue())
        return out.getvalue()

    def test_build_list_evict(self):
        key = self.cli('pool', 'build', '--guest', 'tiny', '--memory-mb',
                       '256', '--vcpus', '1', '--count', '2').strip()
        [row] = json.loads(self.cli('pool', 'list', '--json'))
        self.assertEqual(key, row['key'])
        self.assertEqual(2, row['ready'])
        self.assertEqual(256, row['memory_mb'])
        self.assertEqual({'guest': 'tiny'}, row['labels'])
        self.assertTrue(os.path.exists(os.path.join(
            self.layers, row['layer_id'], 'layer.qcow2')))
        # the build's domain is gone: a template is a file, not a VM
        names = [d.name() for d in self.conn.listAllDomains()]
        self.assertEqual([], [n for n in names
                              if n.startswith('substrate-' + key[:12])])

        self.assertIn('Removed every substrate', self.cli('pool', 'evict',
                                                          '--all'))
        self.assertEqual([], json.loads(self.cli('pool', 'list', '--json')))
        # no clone used the layer, so it went with the template
        self.assertEqual([], os.listdir(self.layers))
