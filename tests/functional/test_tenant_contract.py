"""An activated instance keeps the tenant's contract, as a booted one does.

Servers of the `cloud` test guest (nova_substrate.testing.cloud_guest)
with the tenant's keypair, user-data and a static address, activated and
booted; the tests log in over SSH with the keypair's private key from a
network namespace on the servers' subnet, as the tenant would.
"""

import os

from nova_substrate import notifications
from nova_substrate.testing import cloud_guest
from nova_substrate.testing.cloud_guest import ACTIVATED_SSH_TIMEOUT
from nova_substrate.testing.cloud_guest import BOOT_SSH_TIMEOUT
from nova_substrate.testing.cloud_guest import CLOUD_CONFIG
from nova_substrate.testing.cloud_guest import parse_lines
from nova_substrate.testing.cloud_guest import SCRIPT
from nova_substrate.testing.cloud_guest import UNIQUENESS_SCRIPT

CloudGuestTestCase = cloud_guest.CloudGuestTestCase


class TenantContractTest(CloudGuestTestCase):

    #: Two clones, to compare them with each other.
    POOL_COUNT = 2

    def test_activated_server_answers_as_the_booted_one(self):
        self.wait_for_substrate()
        # The harness has no metadata service: the booted server reads the
        # same documents from a config drive.
        booted = self.create_server(self.normal_flavor_id, '192.168.1.21',
                                    CLOUD_CONFIG, config_drive=True)
        activated = self.create_server(self.substrate_flavor_id,
                                       '192.168.1.22', CLOUD_CONFIG)
        servers = {'booted': self.on_the_network(booted),
                   'activated': self.on_the_network(activated)}
        addresses = {'booted': booted[1], 'activated': activated[1]}
        self.assertSpawned(servers['activated'], notifications.ACTIVATED)

        # The tenant's key logs in to both, and the user-data ran once.
        facts = {}
        for name in ('activated', 'booted'):
            timeout = (ACTIVATED_SSH_TIMEOUT if name == 'activated'
                       else BOOT_SSH_TIMEOUT)
            self.login(addresses[name], timeout)
            facts[name] = self.facts(addresses[name], 'runcmd.count')
            self.assertEqual({
                'count': '1',
                'file': 'written by write_files',
                'hostname': servers[name]['OS-EXT-SRV-ATTR:hostname'],
                'addresses': '%s/24 ' % addresses[name],
                'keys': '1',
            }, facts[name], name)

        # A reboot runs no user-data again and keeps the key.
        server = self.server_action(servers['activated'], 'reboot',
                                    {'type': 'HARD'})
        self.net.attach(activated[2])
        self.login(addresses['activated'], BOOT_SSH_TIMEOUT)
        self.assertEqual(facts['activated'],
                         self.facts(addresses['activated'], 'runcmd.count'))
        self.assertEqual('ACTIVE', server['status'])

    def test_clones_of_one_substrate_share_no_identity(self):
        key = self.wait_for_substrate()
        created = [self.create_server(self.substrate_flavor_id, address,
                                      CLOUD_CONFIG)
                   for address in ('192.168.1.31', '192.168.1.32')]
        servers = [self.on_the_network(c) for c in created]
        for server in servers:
            self.assertSpawned(server, notifications.ACTIVATED)
            self.assertEqual(key, self.spawn_record(server)['key'])
        seen = []
        for (_server, address, _tap) in created:
            self.login(address, ACTIVATED_SSH_TIMEOUT)
            facts = parse_lines(self.run_in_guest(address, UNIQUENESS_SCRIPT))
            facts['host_keys'] = self.net.host_keys(address)
            self.assertTrue(facts['host_keys'])
            seen.append(facts)
        for fact in ('boot_id', 'machine_id', 'random', 'host_keys'):
            self.assertNotEqual(seen[0][fact], seen[1][fact], fact)
        # libvirt gives each restore a new VM generation id.
        genids = {self.domain_of(s).XMLDesc(0).split('<genid>')[1][:36]
                  for s in servers}
        self.assertEqual(2, len(genids))


class ConfigDriveContractTest(CloudGuestTestCase):
    """With config drives forced on, substrates carry a placeholder one."""

    def _configure_compute(self):
        super()._configure_compute()
        self.flags(force_config_drive=True)

    def test_script_user_data_and_the_instances_own_config_drive(self):
        self.wait_for_substrate()
        created = self.create_server(self.substrate_flavor_id,
                                     '192.168.1.41', SCRIPT)
        server = self.on_the_network(created)
        self.assertSpawned(server, notifications.ACTIVATED)
        address = created[1]

        self.login(address, ACTIVATED_SSH_TIMEOUT)
        facts = self.facts(address, 'script.count')
        self.assertEqual('1', facts['count'])
        self.assertEqual(server['OS-EXT-SRV-ATTR:hostname'],
                         facts['hostname'])
        # The guest reads the clone's own config drive, at its size.
        drive = os.path.join(self.instance_dir(server), 'disk.config')
        out = parse_lines(self.run_in_guest(address, '''
echo "size=$(sudo -n blockdev --getsize64 /dev/sr0)"
sudo -n mount -o ro /dev/sr0 /mnt
echo "meta=$(sudo -n cat /mnt/openstack/latest/meta_data.json)"
sudo -n umount /mnt
'''))
        self.assertEqual(str(os.path.getsize(drive)), out['size'])
        self.assertIn('"uuid": "%s"' % server['id'], out['meta'])
