"""An activated instance is an ordinary instance afterwards.

Every operation here runs on an instance activated from a substrate and
must behave as it does for a booted one: Nova regenerates the domain from
its own XML where it would for any instance, and the disk chain is the
one a booted instance has.
"""

import os
import tempfile

import libvirt
from nova import context as nova_context

from nova_substrate.engine import qemuimg
from nova_substrate import notifications
from nova_substrate.testing import libvirt_cloud as base
from nova_substrate.testing import substrate_cloud

# Operations that cold-boot the guest wait for its boot under TCG.
OPERATION_TIMEOUT = 120.0


class ActivatedInstanceLifecycleTest(substrate_cloud.SubstrateDriverTestCase):

    def _configure_compute(self):
        super()._configure_compute()
        # The tiny guest has no ACPI daemon: a soft reboot or a clean stop
        # waits this long before Nova powers it off, as for any such guest.
        self.flags(wait_soft_reboot_seconds=2, group='libvirt')
        self.flags(shutdown_timeout=2, allow_resize_to_same_host=True,
                   shelved_offload_time=0)

    def activated_server(self):
        self.wait_for_substrate()
        server = self.wait_for_active(
            self.boot_server(flavor_id=self.substrate_flavor_id))
        self.assertEqual(notifications.ACTIVATED,
                         self.spawn_record(server)['mode'])
        self.wait_for_flattened(server)
        return server

    def assert_runs_and_boots(self, server):
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.domain_of(server).state()[0])
        self.wait_for_console(server, base.GUEST_READY_LINE,
                              timeout=OPERATION_TIMEOUT)

    def act(self, server, action, body=None, status='ACTIVE'):
        return self.server_action(server, action, body, status,
                                  timeout=OPERATION_TIMEOUT)

    def test_power_operations(self):
        server = self.activated_server()

        self.act(server, 'reboot', {'type': 'SOFT'})
        self.assert_runs_and_boots(server)
        self.act(server, 'reboot', {'type': 'HARD'})
        self.assert_runs_and_boots(server)

        self.act(server, 'os-stop', status='SHUTOFF')
        self.assertEqual(libvirt.VIR_DOMAIN_SHUTOFF,
                         self.domain_of(server).state()[0])
        self.act(server, 'os-start')
        self.assert_runs_and_boots(server)

        self.act(server, 'pause', status='PAUSED')
        self.assertEqual(libvirt.VIR_DOMAIN_PAUSED,
                         self.domain_of(server).state()[0])
        self.act(server, 'unpause')
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.domain_of(server).state()[0])

        self.act(server, 'suspend', status='SUSPENDED')
        self.assertTrue(self.domain_of(server).hasManagedSaveImage(0))
        self.act(server, 'resume')
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.domain_of(server).state()[0])

        self.delete_server(server)
        self.assertRaises(libvirt.libvirtError, self.domain_of, server)
        self.assertEqual([], [n for n in os.listdir(self.instances_path)
                              if n.startswith(server['id'])])
        self.assertEqual({}, {layer: users for layer, users
                              in self.layer_users().items() if users})

    def test_image_and_resize_operations(self):
        server = self.activated_server()

        # A snapshot is a complete image: no backing file, and it boots.
        snapshot_id = self.api.post_server_action(server['id'], {
            'createImage': {'name': 'activated-snapshot'}})['image_id']
        self.wait_for_status(server, 'ACTIVE', timeout=OPERATION_TIMEOUT)
        ctx = nova_context.get_admin_context()
        self.assertEqual('active',
                         self.glance.show(ctx, snapshot_id)['status'])
        with tempfile.NamedTemporaryFile(suffix='.qcow2') as f:
            f.write(self.image_data(snapshot_id))
            f.flush()
            info = qemuimg.info(f.name)
        self.assertNotIn('backing-filename', info)
        self.assertEqual(self.FLAVOR_ROOT_GB * 2 ** 30, info['virtual-size'])

        # Rebuild spawns again: from a substrate, the pool being refilled.
        self.wait_for_substrate()
        self.act(server, 'rebuild', {'imageRef': self.image_id})
        self.assertEqual(notifications.ACTIVATED,
                         self.spawn_record(server)['mode'])
        self.wait_for_flattened(server)

        bigger = self._create_flavor(
            name='m1.bigger', memory_mb=self.FLAVOR_MEMORY_MB + 256,
            vcpu=self.FLAVOR_VCPUS, disk=self.FLAVOR_ROOT_GB, ephemeral=0,
            swap=0)
        self.act(server, 'resize', {'flavorRef': bigger},
                 status='VERIFY_RESIZE')
        self.act(server, 'confirmResize')
        self.assertEqual((self.FLAVOR_MEMORY_MB + 256) * 1024,
                         self.domain_of(server).info()[1])
        self.assert_runs_and_boots(server)

        self.act(server, 'shelve', status='SHELVED_OFFLOADED')
        self.assertRaises(libvirt.libvirtError, self.domain_of, server)
        self.act(server, 'unshelve')
        self.assert_runs_and_boots(server)

        self.delete_server(server)
        self.assertEqual([], [n for n in os.listdir(self.instances_path)
                              if n.startswith(server['id'])])
