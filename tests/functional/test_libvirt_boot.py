"""The stock LibvirtDriver boots and deletes real guests through Nova."""

import os

import libvirt

from nova_substrate.testing import libvirt_cloud as base

GUEST_READY = base.GUEST_READY_LINE


class LibvirtBootTest(base.RealLibvirtTestCase):

    def test_created_server_runs_as_its_own_domain_and_boots(self):
        server = self.wait_for_active(self.boot_server())

        domain = self.domain_of(server)
        self.assertEqual('instance-%s' % server['id'], domain.name())
        self.assertEqual(server['id'], domain.UUIDString())
        state, _reason = domain.state()
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, state)
        self.assertIn(GUEST_READY, self.wait_for_console(server, GUEST_READY))

    def test_deleted_server_leaves_no_domain_and_no_files(self):
        server = self.wait_for_active(self.boot_server())
        self.assertTrue(os.path.isdir(self.instance_dir(server)))

        self.delete_server(server)

        error = self.assertRaises(libvirt.libvirtError,
                                  self.domain_of, server)
        self.assertEqual(libvirt.VIR_ERR_NO_DOMAIN, error.get_error_code())
        # Nova renames an instance's directory to <uuid>_del before it
        # removes it: neither may be left.
        self.assertEqual(
            [], [name for name in os.listdir(self.instances_path)
                 if name.startswith(server['id'])])
