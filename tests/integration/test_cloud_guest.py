"""The cloud test guest, booted from its disk with a config drive.

One boot for the class, as Nova boots an image with a config drive: the
built disk under a qcow2 overlay, GRUB and the image's own kernel, and
an ISO 9660 drive labelled config-2 (made with genisoimage, as Nova
makes it) holding the instance's metadata, key and user data. What
cloud-init made of it is read back through the guest agent.

The drive is a SCSI cdrom on a virtio-scsi controller: Debian's cloud
kernel has no AHCI driver, so it never sees a SATA cdrom (q35's
default), and cloud-init would find no datasource.
"""

import json
import os
import subprocess
import time
import uuid


from nova_substrate.engine import exception
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import qemuimg
from nova_substrate import guests
from nova_substrate.guests import base as guests_base
from nova_substrate.guests import configdrive
from nova_substrate.guests import domain as guest_domain
from tests.integration import base

# Under TCG, GRUB, the kernel, systemd and cloud-init's first boot
# (SSH host keys above all) take a minute or two.
BOOT_TIMEOUT_S = 600
CALL_TIMEOUT_S = 30
MARKER = '/var/lib/nova-substrate-test/marker'
WRITTEN_FILE = '/etc/nova-substrate-test/written.txt'
USER_DATA = '''#cloud-config
write_files:
  - path: %(file)s
    content: |
      written by cloud-init
runcmd:
  - [sh, -c, "mkdir -p %(marker_dir)s && echo ran > %(marker)s"]
''' % {'file': WRITTEN_FILE, 'marker': MARKER,
       'marker_dir': os.path.dirname(MARKER)}


class CloudGuestTest(base.LibvirtTestCase):

    MEMORY_MB = 1024
    VCPUS = 1

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.guest = guests.get_guest('cloud', cache_dir=base.GUEST_CACHE)
        name = 'it-cloud-%s' % uuid.uuid4().hex[:8]
        cls.domain_uuid = str(uuid.uuid4())
        cls.hostname = 'cloud-%s' % uuid.uuid4().hex[:6]
        cls.console_log = os.path.join(cls.work, name + '.log')
        cls.public_key = cls.make_key()
        config_drive = cls.make_config_drive()
        overlay = os.path.join(cls.work, name + '.qcow2')
        qemuimg.create_overlay(overlay, cls.guest.disk, 'qcow2')
        xml = guest_domain.instance_xml(
            cls.guest, name, cls.domain_uuid, cls.MEMORY_MB, cls.VCPUS,
            overlay, cls.console_log,
            devices=configdrive.config_drive_devices(config_drive))
        cls.start_domain(xml, cls.domain_uuid, cls.console_log)
        cls.agent = guest_agent.GuestAgent(cls.dom)
        cls.cloud_init_status = cls.wait_for_cloud_init(
            time.monotonic() + BOOT_TIMEOUT_S)

    @classmethod
    def make_key(cls):
        path = os.path.join(cls.work, 'id_ed25519')
        subprocess.run([guests_base.find_tool('cloud', 'ssh-keygen',
                                              'openssh-client'),
                        '-q', '-t', 'ed25519', '-N', '', '-C', 'it-cloud',
                        '-f', path], check=True)
        with open(path + '.pub') as f:
            return f.read().strip()

    @classmethod
    def make_config_drive(cls):
        """An OpenStack config drive, as Nova's configdrive module makes it."""
        latest = 'openstack/latest/'
        meta_data = {'uuid': cls.domain_uuid, 'hostname': cls.hostname,
                     'name': cls.hostname, 'launch_index': 0,
                     'availability_zone': 'nova',
                     'public_keys': {'k': cls.public_key}}
        iso = os.path.join(cls.work, 'config-drive.iso')
        configdrive.make_config_drive(
            {latest + 'meta_data.json': json.dumps(meta_data).encode(),
             latest + 'user_data': USER_DATA.encode()}, iso, cls.work)
        return iso

    @classmethod
    def wait_for_agent(cls, deadline):
        """Wait for the guest agent, failing early if the guest stops."""
        while True:
            try:
                cls.agent.wait_ready(min(deadline, time.monotonic() + 5))
                return
            except exception.GuestAgentTimeout:
                if not cls.dom.isActive() or time.monotonic() >= deadline:
                    raise

    @classmethod
    def wait_for_cloud_init(cls, deadline):
        """cloud-init's status once its last stage ran (or gave up)."""
        try:
            cls.wait_for_agent(deadline)
            result = cls.agent.run('/usr/bin/cloud-init', ['status', '--wait'],
                                   deadline=deadline)
        except exception.SubstrateError as e:
            raise AssertionError('the guest did not finish booting: %s\n%s'
                                 % (e, cls.console_tail()))
        # --wait prints a dot a second before the status line.
        return result.stdout.strip().splitlines()[-1]

    def test_cloud_init_is_done_with_the_config_drive(self):
        self.assertEqual('status: done', self.cloud_init_status,
                         self.guest_run(self.dom, 'cloud-init status --long'))
        result = json.loads(self.guest_run(self.dom,
                                           'cat /run/cloud-init/result.json'))
        self.assertEqual([], result['v1']['errors'])
        self.assertTrue(result['v1']['datasource'].startswith(
            'DataSourceConfigDrive'), result)
        state = self.guest_run(self.dom,
                               'systemctl is-system-running --wait || true')
        self.assertIn(state, ('running', 'degraded'))

    def test_default_user_has_the_instance_key(self):
        passwd = self.guest_run(self.dom, 'getent passwd debian')
        self.assertEqual('/home/debian', passwd.split(':')[5])
        keys = self.guest_run(self.dom,
                              'cat /home/debian/.ssh/authorized_keys')
        self.assertEqual([self.public_key], keys.splitlines())
        self.assertIn('sudo', self.guest_run(self.dom, 'id -nG debian'))

    def test_user_data_ran(self):
        self.assertEqual('ran', self.guest_run(self.dom, 'cat ' + MARKER))
        self.assertEqual('written by cloud-init',
                         self.guest_run(self.dom, 'cat ' + WRITTEN_FILE))

    def test_instance_identity_comes_from_the_metadata(self):
        self.assertEqual(self.hostname, self.guest_run(self.dom, 'hostname'))
        self.assertEqual(self.domain_uuid, self.guest_run(
            self.dom, 'cloud-init query instance_id'))
        # made for this instance, not baked into the image
        self.assertIn('ssh_host_ed25519_key.pub',
                      self.guest_run(self.dom, 'ls /etc/ssh').split())
