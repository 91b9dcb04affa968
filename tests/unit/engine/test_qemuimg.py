"""Overlays made with qemu-img: chained, sized, root-only."""

import os
import stat
import subprocess

import fixtures
import testtools

from nova_substrate.engine import exception
from nova_substrate.engine import qemuimg


class OverlayTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.base = os.path.join(self.dir, 'base.qcow2')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', self.base,
                        '64M'], check=True)

    def test_overlay_chains_onto_its_backing(self):
        overlay = os.path.join(self.dir, 'overlay.qcow2')
        qemuimg.create_overlay(overlay, self.base, 'qcow2')
        info = qemuimg.info(overlay)
        self.assertEqual(self.base, info['full-backing-filename'])
        self.assertEqual('qcow2', info['backing-filename-format'])
        self.assertEqual(64 << 20, info['virtual-size'])
        self.assertEqual(0o600, stat.S_IMODE(os.stat(overlay).st_mode))

    def test_sized_overlay_does_not_open_the_backing(self):
        # The activation path names the size, so a backing chain that is
        # busy or slow to open costs nothing.
        overlay = os.path.join(self.dir, 'overlay.qcow2')
        qemuimg.create_overlay(overlay, self.dir + '/not-yet-there.qcow2',
                               'qcow2', size=64 << 20)
        self.assertEqual(64 << 20, qemuimg.info(overlay)['virtual-size'])

    def test_error_names_the_operation(self):
        e = self.assertRaises(exception.SubstrateError,
                              qemuimg.create_overlay,
                              os.path.join(self.dir, 'o.qcow2'),
                              self.dir + '/missing.qcow2', 'qcow2')
        self.assertIn('qemu-img create failed', str(e))
