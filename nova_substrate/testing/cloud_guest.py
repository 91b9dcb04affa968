"""Servers of the cloud test guest, as a tenant creates and reaches them.

Nova's services run SubstrateDriver on the host's libvirtd with the
`cloud` test guest: a Debian cloud image that boots from its own disk and
whose default user cloud-init makes from the instance's data. Servers get
the tenant's keypair, user-data and a port on a subnet without DHCP (a
static address from network_data.json). Their tap devices are put on a
bridge whose other end is a network namespace holding the subnet's
gateway (testnet.TestNetwork), from where SSH with the keypair's private
key reaches them as it would reach the tenant's servers. Used by the
functional tests of the tenant's contract and by ``bench nova --guest
cloud``.
"""

import base64
import copy
import random
import subprocess
import time
import uuid

from nova_substrate.testing import substrate_cloud as substrate_base
from nova_substrate.testing import testnet

USER = 'debian'
GATEWAY_CIDR = '192.168.1.1/24'
KEY_NAME = 'tenant'
# A booted cloud image under TCG: firmware, GRUB, kernel, systemd,
# cloud-init's four stages, sshd.
BOOT_SSH_TIMEOUT = 420.0
ACTIVATED_SSH_TIMEOUT = 120.0
CLOUD_INIT_TIMEOUT = 300
SSH_ATTEMPTS = 10
# The first boot of the cloud guest (cloud-init included) is what a build
# waits for.
CLOUD_BUILD_TIMEOUT = 600.0
ACTIVATE_TIMEOUT = 120.0

CLOUD_CONFIG = '''#cloud-config
write_files:
  - path: /var/lib/tenant/file.txt
    content: written by write_files
runcmd:
  - [sh, -c, 'echo ran >> /var/lib/tenant/runcmd.count']
'''
SCRIPT = '''#!/bin/sh
mkdir -p /var/lib/tenant
echo ran >> /var/lib/tenant/script.count
'''
# What a tenant checks after logging in; one line each.
FACTS_SCRIPT = '''
sudo -n cloud-init status --wait > /dev/null
echo "count=$(cat /var/lib/tenant/%(marker)s 2>/dev/null | wc -l)"
echo "file=$(cat /var/lib/tenant/file.txt 2>/dev/null)"
echo "hostname=$(hostname)"
echo "addresses=$(ip -4 -o addr show scope global | awk '{print $4}' | \
    sort | tr '\\n' ' ')"
echo "keys=$(cat ~/.ssh/authorized_keys | wc -l)"
'''
# What makes a machine unique; one line each.
UNIQUENESS_SCRIPT = '''
echo "boot_id=$(cat /proc/sys/kernel/random/boot_id)"
echo "machine_id=$(cat /etc/machine-id)"
echo "random=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n')"
'''


def parse_lines(text):
    return dict(line.split('=', 1) for line in text.splitlines()
                if '=' in line)


class CloudGuestTestCase(substrate_base.SubstrateDriverTestCase):
    """Servers of the cloud guest on ports of a static subnet."""

    GUEST = 'cloud'
    FLAVOR_MEMORY_MB = 512
    FLAVOR_ROOT_GB = 2

    def setUp(self):
        super().setUp()
        self.net = self.useFixture(testnet.TestNetwork(GATEWAY_CIDR))
        subnet_id = self.neutron.subnet_1['id']
        self.neutron._subnets[subnet_id]['enable_dhcp'] = False
        self.api.post_keypair({'keypair': {
            'name': KEY_NAME, 'public_key': self.net.public_key}})

    def _register_guest_images(self, properties=None):
        if properties is None:
            # Debian's cloud kernel has no SATA (AHCI) driver, and SATA is
            # where Nova puts a config drive on q35: the image asks for a
            # SCSI CD-ROM on virtio-scsi, as such images must.
            properties = {'hw_qemu_guest_agent': 'yes',
                          'architecture': 'x86_64',
                          'hw_cdrom_bus': 'scsi',
                          'hw_scsi_model': 'virtio-scsi'}
        return super()._register_guest_images(properties)

    def _configure_compute(self):
        super()._configure_compute()
        # cloud-init's stages take seconds under TCG, more beside a
        # booting server.
        self.flags(build_timeout=CLOUD_BUILD_TIMEOUT,
                   activate_timeout=ACTIVATE_TIMEOUT, group='substrate')

    def wait_for_substrate(self, key=None, ready=None,
                           timeout=CLOUD_BUILD_TIMEOUT):
        return super().wait_for_substrate(key, ready, timeout)

    def tap_port(self, address):
        """A port with a static address, bound as a plain tap device."""
        port = copy.deepcopy(self.neutron.port_1)
        port.update({
            'id': str(uuid.uuid4()),
            'mac_address': 'fa:16:3e:%02x:%02x:%02x' % tuple(
                random.randrange(256) for _ in range(3)),
            'fixed_ips': [{'ip_address': address,
                           'subnet_id': self.neutron.subnet_1['id']}],
            'binding:vif_type': 'tap',
        })
        self.neutron._ports[port['id']] = port
        tap = ('tap' + port['id'])[:14]
        self.addCleanup(subprocess.call, ['ip', 'link', 'del', tap],
                        stderr=subprocess.DEVNULL)
        return port, tap

    def create_server(self, flavor_id, address, user_data, **extra):
        """POST /servers as the tenant; (server, its address, its tap)."""
        port, tap = self.tap_port(address)
        body = self._build_server(image_uuid=self.image_id,
                                  flavor_id=flavor_id,
                                  networks=[{'port': port['id']}])
        body['key_name'] = KEY_NAME
        body['user_data'] = base64.b64encode(user_data.encode()).decode()
        body.update(extra)
        return self.api.post_server({'server': body}), address, tap

    def on_the_network(self, created):
        """The server once ACTIVE, its tap on the test bridge."""
        server, _address, tap = created
        # An activated server is ACTIVE once its address and the tenant's
        # keys are in place; cloud-init goes on in its background.
        server = self.wait_for_active(server,
                                      timeout=ACTIVATE_TIMEOUT + 60)
        self.net.attach(tap)
        return server

    def login(self, address, timeout):
        return self.net.wait_for_ssh(USER, address, timeout)

    def run_in_guest(self, address, script):
        # ssh says 255 when the connection itself failed: sshd reloading
        # with the clone's last host keys closes its port for a moment, as
        # it would on any server whose host keys change.
        for _attempt in range(SSH_ATTEMPTS):
            status, out, err = self.net.ssh(USER, address, script,
                                            timeout=CLOUD_INIT_TIMEOUT)
            if status != 255:
                break
            time.sleep(1)
        self.assertEqual(0, status, err)
        return out

    def facts(self, address, marker):
        return parse_lines(self.run_in_guest(address, FACTS_SCRIPT % {
            'marker': marker}))

    def assertSpawned(self, server, mode):
        record = self.spawn_record(server)
        self.assertEqual(mode, record['mode'], substrate_base.dump(record))
