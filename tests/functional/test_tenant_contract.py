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

    def test_activated_servers_answer_as_the_booted_one(self):
        key = self.wait_for_substrate()
        # The harness has no metadata service: the booted server reads the
        # same documents from a config drive.
        # One request at a time, as one tenant's: the booted server goes on
        # booting while the others are activated.
        requests = (
            ('booted', self.normal_flavor_id, '192.168.1.21',
             {'config_drive': True}),
            ('activated', self.substrate_flavor_id, '192.168.1.22', {}),
            ('second', self.substrate_flavor_id, '192.168.1.23', {}),
        )
        created, servers = {}, {}
        for name, flavor_id, address, extra in requests:
            created[name] = self.create_server(flavor_id, address,
                                               CLOUD_CONFIG, **extra)
            servers[name] = self.on_the_network(created[name])
        addresses = {name: c[1] for name, c in created.items()}
        for name in ('activated', 'second'):
            self.assertSpawned(servers[name], notifications.ACTIVATED)
            record = self.spawn_record(servers[name])
            self.assertEqual(key, record['key'])
            # The hook gave the address and the key before cloud-init ran
            # (engine/early_access.py); cloud-init's own run must leave
            # them as they were: checked below, on the guest.
            for step in ('guest_addresses_s', 'guest_login_keys_s'):
                self.assertIn(step, record['timings'])

        # The tenant's key logs in to each, and the user-data ran once.
        facts = {}
        for name in ('activated', 'second', 'booted'):
            timeout = (BOOT_SSH_TIMEOUT if name == 'booted'
                       else ACTIVATED_SSH_TIMEOUT)
            self.login(addresses[name], timeout)
            facts[name] = self.facts(addresses[name], 'runcmd.count')
            self.assertEqual({
                'count': '1',
                'file': 'written by write_files',
                'hostname': servers[name]['OS-EXT-SRV-ATTR:hostname'],
                'addresses': '%s/24 ' % addresses[name],
                'keys': '1',
            }, facts[name], name)

        # Two clones of one substrate share no identity.
        unique = []
        for name in ('activated', 'second'):
            seen = parse_lines(self.run_in_guest(addresses[name],
                                                 UNIQUENESS_SCRIPT))
            seen['host_keys'] = self.net.host_keys(addresses[name])
            self.assertTrue(seen['host_keys'])
            unique.append(seen)
        for fact in ('boot_id', 'machine_id', 'random', 'host_keys'):
            self.assertNotEqual(unique[0][fact], unique[1][fact], fact)
        # libvirt gives each restore a new VM generation id.
        genids = {self.domain_of(servers[name]).XMLDesc(0).split(
            '<genid>')[1][:36] for name in ('activated', 'second')}
        self.assertEqual(2, len(genids))

        # A reboot runs no user-data again and keeps the key.
        server = self.server_action(servers['activated'], 'reboot',
                                    {'type': 'HARD'})
        self.assertEqual('ACTIVE', server['status'])
        self.net.attach(created['activated'][2])
        self.login(addresses['activated'], BOOT_SSH_TIMEOUT)
        self.assertEqual(facts['activated'],
                         self.facts(addresses['activated'], 'runcmd.count'))


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
