"""The domain XML of a test guest's instance: direct kernel or disk boot."""

from xml.etree import ElementTree

import testtools

from nova_substrate.guests import base
from nova_substrate.guests import domain

CDROM = ("<disk type='file' device='cdrom'><source file='/w/config.iso'/>"
         "<target dev='sda' bus='sata'/><readonly/></disk>")


def guest_image(**fields):
    values = dict(name='debian', kernel='/cache/vmlinuz',
                  initrd='/cache/initrd.img', disk='/cache/disk.qcow2',
                  cmdline='root=/dev/vda console=ttyS0', digest='0' * 64,
                  disk_bytes=2 << 30, disk_file_bytes=300 << 20)
    values.update(fields)
    return base.GuestImage(**values)


class InstanceXmlTest(testtools.TestCase):

    def xml(self, guest, **kwargs):
        return ElementTree.fromstring(domain.instance_xml(
            guest, 'it-1', '6f2c3bb4-8a51-4f8e-9c43-3f4a2d0b7c11', 1024, 1,
            '/work/it-1.qcow2', '/work/it-1.log', **kwargs))

    def test_direct_kernel_boot(self):
        root = self.xml(guest_image())
        os_node = root.find('os')
        self.assertEqual('/cache/vmlinuz', os_node.findtext('kernel'))
        self.assertEqual('/cache/initrd.img', os_node.findtext('initrd'))
        self.assertEqual('root=/dev/vda console=ttyS0',
                         os_node.findtext('cmdline'))
        self.assertIsNone(os_node.find('boot'))

    def test_guest_with_its_own_boot_loader_boots_its_disk(self):
        guest = guest_image(name='cloud', kernel=None, initrd=None,
                            cmdline=None)
        self.assertTrue(guest.boots_from_disk)
        root = self.xml(guest)
        os_node = root.find('os')
        self.assertEqual(['type', 'boot'], [node.tag for node in os_node])
        self.assertEqual('hd', os_node.find('boot').get('dev'))
        self.assertEqual('/work/it-1.qcow2',
                         root.find('devices/disk/source').get('file'))

    def test_other_devices_join_the_nics(self):
        nic = "<interface type='ethernet'><model type='virtio'/></interface>"
        root = self.xml(guest_image(kernel=None, initrd=None, cmdline=None),
                        nics=[nic], devices=[CDROM])
        disks = root.findall('devices/disk')
        self.assertEqual(['disk', 'cdrom'],
                         [disk.get('device') for disk in disks])
        self.assertEqual('/w/config.iso', disks[1].find('source').get('file'))
        self.assertEqual(1, len(root.findall('devices/interface')))
