"""bench activation: a tenant's instance data, its config drive, the result.

The measurements need libvirt and QEMU (tests/integration); what goes
into the instances and what the runs are turned into is tested here.
"""

import contextlib
import io
import json
import os
import shutil
import subprocess
import unittest
from xml.etree import ElementTree as ET

import fixtures
import testtools
import yaml

from nova_substrate.bench import activation
from nova_substrate.cmd import main as cmd_main
from nova_substrate import guests
from nova_substrate.guests import configdrive

UUID = '5f1e7d0a-2b8c-4a2e-9d1b-3c4f5a6b7c8d'
MAC = '52:54:00:AB:cd:01'
KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake tenant@bench'
LATEST = 'openstack/latest/'


class ConfigDriveFilesTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.files = activation.config_drive_files(
            UUID, 'bench-boot-1', MAC, '192.168.231.7/24', KEY,
            activation.user_data(UUID))

    def load(self, name):
        return json.loads(self.files[LATEST + name].decode())

    def test_the_config_drive_layout(self):
        self.assertEqual(
            sorted(LATEST + n for n in ('meta_data.json',
                                        'network_data.json', 'user_data')),
            sorted(self.files))
        for data in self.files.values():
            self.assertIsInstance(data, bytes)

    def test_metadata_names_the_instance_and_its_key(self):
        meta = self.load('meta_data.json')
        self.assertEqual(UUID, meta['uuid'])
        self.assertEqual('bench-boot-1', meta['hostname'])
        self.assertEqual([KEY], list(meta['public_keys'].values()))

    def test_static_address_on_the_nic_with_the_mac(self):
        net = self.load('network_data.json')
        [link] = net['links']
        [network] = net['networks']
        # cloud-init matches the MAC as the guest reports it: lower case
        self.assertEqual(MAC.lower(), link['ethernet_mac_address'])
        self.assertEqual(link['id'], network['link'])
        self.assertEqual('ipv4', network['type'])
        self.assertEqual('192.168.231.7', network['ip_address'])
        self.assertEqual('255.255.255.0', network['netmask'])

    def test_user_data_writes_the_instance_uuid_to_the_marker(self):
        text = self.files[LATEST + 'user_data'].decode()
        self.assertTrue(text.startswith('#cloud-config\n'))
        [command] = yaml.safe_load(text)['runcmd']
        self.assertEqual(['sh', '-c'], command[:2])
        marker = activation.USERDATA_MARKER
        # written whole: a poll never sees half a line
        self.assertEqual('echo %s > %s.tmp && mv %s.tmp %s'
                         % (UUID, marker, marker, marker), command[2])


class AddressesTest(testtools.TestCase):

    def test_every_address_but_the_gateway_once(self):
        addresses = list(activation.instance_addresses('10.9.8.1/29'))
        self.assertEqual(['10.9.8.%d/29' % i for i in range(2, 7)],
                         addresses)

    def test_gateway_in_the_middle(self):
        addresses = list(activation.instance_addresses('10.9.8.3/29'))
        self.assertNotIn('10.9.8.3/29', addresses)
        self.assertEqual(5, len(addresses))


class GuestSizeTest(testtools.TestCase):

    def test_defaults(self):
        self.assertEqual((512, 2), activation.guest_size('tiny'))
        self.assertEqual((512, 2), activation.guest_size('debian'))
        self.assertEqual((512, 1), activation.guest_size('cloud'))

    def test_every_cloud_init_guest_is_a_test_guest(self):
        self.assertEqual(set(), set(activation.CLOUD_INIT_GUESTS) -
                         set(guests.GUEST_NAMES))


class ConfigDriveDevicesTest(testtools.TestCase):

    def test_readonly_cdrom_on_a_scsi_controller(self):
        controller, disk = (ET.fromstring(x) for x in
                            configdrive.config_drive_devices("/a/b'c.iso"))
        self.assertEqual(('scsi', 'virtio-scsi'),
                         (controller.get('type'), controller.get('model')))
        self.assertEqual('cdrom', disk.get('device'))
        self.assertEqual("/a/b'c.iso", disk.find('source').get('file'))
        self.assertEqual('scsi', disk.find('target').get('bus'))
        self.assertIsNotNone(disk.find('readonly'))

    def test_genisoimage_as_nova_runs_it(self):
        argv = configdrive.genisoimage_argv('/x/disk.config', '/x/top')
        self.assertEqual('genisoimage', argv[0])
        self.assertEqual('config-2', argv[argv.index('-V') + 1])
        self.assertEqual('/x/disk.config', argv[argv.index('-o') + 1])
        self.assertEqual('/x/top', argv[-1])


@unittest.skipUnless(shutil.which('genisoimage') and shutil.which('isoinfo'),
                     'needs genisoimage and isoinfo (package genisoimage)')
class MakeConfigDriveTest(testtools.TestCase):

    def test_iso_holds_the_files_under_the_label(self):
        work = self.useFixture(fixtures.TempDir()).path
        files = activation.config_drive_files(
            UUID, 'h', MAC, '192.168.231.9/24', KEY,
            activation.user_data(UUID))
        iso = os.path.join(work, 'drive.iso')
        configdrive.make_config_drive(files, iso, work)
        info = subprocess.run(['isoinfo', '-d', '-i', iso], check=True,
                              capture_output=True, text=True).stdout
        self.assertIn('Volume id: config-2', info)
        listing = subprocess.run(['isoinfo', '-R', '-f', '-i', iso],
                                 check=True, capture_output=True,
                                 text=True).stdout.split()
        for name in files:
            self.assertIn('/' + name, listing)
        data = subprocess.run(
            ['isoinfo', '-R', '-x', '/' + LATEST + 'meta_data.json', '-i',
             iso], check=True, capture_output=True).stdout
        self.assertEqual(files[LATEST + 'meta_data.json'], data)
        # the scratch tree is gone, the ISO is readable by QEMU's user
        self.assertEqual(['drive.iso'], os.listdir(work))
        self.assertEqual(0o644, os.stat(iso).st_mode & 0o777)


class TenantFieldsTest(testtools.TestCase):

    def test_medians_ratios_and_runs(self):
        fields = activation.tenant_fields([80.0, 70.0, 90.0],
                                          [10.0, 20.0, 12.0],
                                          [95.0, 85.0, 100.0],
                                          [15.0, 25.0, 17.0])
        self.assertEqual(80.0, fields['boot_ssh_s'])
        self.assertEqual(12.0, fields['activate_ssh_s'])
        self.assertEqual(95.0, fields['boot_userdata_s'])
        self.assertEqual(17.0, fields['activate_userdata_s'])
        self.assertEqual(round(80 / 12, 2), fields['ssh_ratio'])
        self.assertEqual(round(95 / 17, 2), fields['userdata_ratio'])
        self.assertEqual([10.0, 20.0, 12.0], fields['activate_ssh_runs_s'])
        self.assertEqual([95.0, 85.0, 100.0], fields['boot_userdata_runs_s'])


RESULT = {
    'guest': 'cloud', 'flavor_ram_mb': 512, 'vcpus': 1, 'runs': 1,
    'clones': 8, 'boot_s': 90.0, 'running_s': 0.8, 'running_over_floor': 2.0,
    'activate_s': 12.0, 'libvirt_floor_s': 0.4, 'ratio': 7.5,
    'concurrent_s': 60.0, 'concurrent_over_single': 5.0,
    'substrate_bytes': 200 * 2 ** 20, 'substrate_fraction_of_ram': 0.39,
    'build_s': 120.0,
}


class PrintActivationTest(testtools.TestCase):

    def show(self, result):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            cmd_main._print_activation(result)
        return out.getvalue()

    def test_guest_without_cloud_init(self):
        text = self.show(RESULT)
        self.assertIn('boot to guest-ready', text)
        self.assertNotIn('SSH', text)

    def test_tenant_rows(self):
        result = dict(RESULT, **activation.tenant_fields([80.0], [10.0],
                                                         [95.0], [16.0]))
        text = self.show(result)
        self.assertIn('boot to SSH login', text)
        self.assertIn('80.000 s', text)
        self.assertIn('activation to user data done', text)
        self.assertIn('8.0x', text)   # SSH: 80 / 10
        self.assertIn('5.9x', text)   # user data: 95 / 16


class ParserTest(testtools.TestCase):

    def test_every_test_guest_and_its_own_size(self):
        parser = cmd_main.build_parser()
        args = parser.parse_args(['bench', 'activation', '--guest', 'cloud',
                                  '--runs', '1'])
        self.assertEqual(('cloud', 1, None, None),
                         (args.guest, args.runs, args.memory_mb, args.vcpus))
        for name in guests.GUEST_NAMES:
            parser.parse_args(['bench', 'activation', '--guest', name])


class SshOptionsTest(testtools.TestCase):

    def test_connect_timeout_replaced_not_added(self):
        # ssh takes the first value of an option: a second one is ignored
        options = activation.ssh_options(17)
        timeouts = [o for o in options if o.startswith('ConnectTimeout=')]
        self.assertEqual(['ConnectTimeout=17'], timeouts)
        self.assertIn('BatchMode=yes', options)
