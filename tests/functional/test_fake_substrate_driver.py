"""FakeSubstrateDriver: several simulated substrate hosts, no hypervisor.

Nova's in-process cloud (API, conductor, scheduler, placement) with one
nova-compute per host, each running ``substrate.FakeSubstrateDriver``
with its own ``[substrate] pools``. The hosts must look to the scheduler
and to placement exactly as real substrate hosts do.
"""

# Before anything imports Nova: it makes Nova's threading choice for the
# process (tests/functional/__init__.py does too).
import nova_substrate.testing  # noqa: F401

import os

from nova import context as nova_context
from nova import objects
from oslo_messaging.notify import _impl_test as messaging_test
from oslo_utils.fixture import uuidsentinel as uuids

from nova_substrate import notifications
from nova_substrate import substrate_key
from nova_substrate.testing import fake_cloud
from nova_substrate.virt import fake as fake_substrate
from nova_substrate.virt import reporting

SUBSTRATE_FLAVOR = 'm1.substrate'
NORMAL_FLAVOR = 'm1.normal'
# Small enough for many servers on MediumFakeDriver's 10 vCPUs and 8 GiB.
FLAVOR = dict(memory_mb=512, vcpu=1, disk=1, ephemeral=0, swap=0)


class FakeSubstrateDriverTest(fake_cloud.FakeSubstrateCloudTestCase):

    def setUp(self):
        super().setUp()
        glance_images = self.glance.images
        # Disk images a real substrate host could build from.
        self.image_id = self.glance.image1['id']
        self.other_image_id = self.glance.image3['id']
        for image_id in (self.image_id, self.other_image_id):
            self.assertIn(glance_images[image_id]['disk_format'],
                          ('raw', 'qcow2'))

        # Before the computes start: their pools name these flavors.
        self.substrate_flavor_id = self._create_flavor(
            name=SUBSTRATE_FLAVOR,
            extra_spec={substrate_key.ENABLED: 'true'}, **FLAVOR)
        self.normal_flavor_id = self._create_flavor(name=NORMAL_FLAVOR,
                                                    **FLAVOR)
        self.key = self.expected_key(self.image_id, self.substrate_flavor_id)
        self.other_key = self.expected_key(self.other_image_id,
                                           self.substrate_flavor_id)
        self.missing_image_id = uuids.missing_image

        # The driver reads [substrate] pools when it is created, so each
        # compute keeps the pools set just before it starts.
        self.start_substrate_compute('host1', [
            '%s:%s:2' % (self.image_id, self.substrate_flavor_id)])
        self.start_substrate_compute('host2', [
            # By flavor name: the same key as by flavor id.
            '%s:%s:1' % (self.image_id, SUBSTRATE_FLAVOR),
            '%s:%s:1' % (self.other_image_id, self.substrate_flavor_id)])
        self.start_substrate_compute('host3', [])
        # Glance does not have this image (yet).
        self.start_substrate_compute('host4', [
            '%s:%s:1' % (self.missing_image_id, self.substrate_flavor_id)])

    # -- what the scheduler sees -------------------------------------------

    def driver(self, host):
        return self.computes[host].manager.driver

    def host_stats(self, host):
        ctx = nova_context.get_admin_context()
        [node] = objects.ComputeNodeList.get_all_by_host(ctx, host)
        return node.stats

    def substrate_traits(self, host):
        rp_uuid = self._get_provider_uuid_by_host(host)
        return {t for t in self._get_provider_traits(rp_uuid)
                if t.startswith(reporting.TRAIT_PREFIX)}

    def assert_reports(self, host, ready_by_key):
        """The host's stats and traits say it holds ready_by_key."""
        stats = self.host_stats(host)
        self.assertEqual('1', stats[reporting.HOST_STAT], host)
        self.assertEqual(ready_by_key, reporting.ready_from_stats(stats),
                         host)
        self.assertEqual(
            str(fake_substrate.FAKE_SUBSTRATE_MB * sum(ready_by_key.values())),
            stats[reporting.MEMORY_STAT], host)
        self.assertEqual({reporting.HOST_TRAIT} |
                         {reporting.key_trait(k)
                          for k, n in ready_by_key.items() if n > 0},
                         self.substrate_traits(host), host)

    # -- servers and what the driver recorded ------------------------------

    def boot(self, host, flavor_id, image_id=None):
        return self._create_server(
            image_uuid=image_id or self.image_id, flavor_id=flavor_id,
            networks='none', host=host)

    def sysmeta(self, server):
        ctx = nova_context.get_admin_context()
        return objects.Instance.get_by_uuid(
            ctx, server['id'], expected_attrs=['system_metadata']
        ).system_metadata

    def spawn_records(self, server):
        log = notifications.ActivationLog(
            os.path.join(self.log_dir, 'activations.jsonl'))
        return [r for r in log.read() if r['instance_uuid'] == server['id']]

    def substrate_events(self, server):
        return [m['event_type']
                for _ctx, m, _prio, _retry in messaging_test.NOTIFICATIONS
                if m['event_type'].startswith('substrate.') and
                m['payload'].get('instance_uuid') == server['id']]

    def assert_spawned(self, server, mode, host, key):
        self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(mode, self.sysmeta(server)['substrate_spawn'])
        [record] = self.spawn_records(server)
        self.assertEqual(mode, record['mode'])
        self.assertEqual(host, record['host'])
        self.assertEqual(key, record['key'])
        self.assertEqual(
            [notifications.ACTIVATE_END] if mode == notifications.ACTIVATED
            else [notifications.BOOT_END],
            self.substrate_events(server))
        return record

    def assert_recorded_once(self, server, mode, host):
        """The server's spawn is all that was recorded of it."""
        self.assertEqual(mode, self.sysmeta(server)['substrate_spawn'])
        self.assertEqual([(mode, host)],
                         [(r['mode'], r['host'])
                          for r in self.spawn_records(server)])
        self.assertEqual(1, len(self.substrate_events(server)))

    # -- tests -------------------------------------------------------------

    def test_each_host_reports_its_own_pools(self):
        self._run_periodics()

        self.assertNotEqual(self.key, self.other_key)
        self.assert_reports('host1', {self.key: 2})
        self.assert_reports('host2', {self.key: 1, self.other_key: 1})
        # Still substrate hosts, holding nothing.
        self.assert_reports('host3', {})
        self.assert_reports('host4', {})
        self.assertEqual(str(fake_cloud.BUDGET_MB),
                         self.host_stats('host3')[reporting.BUDGET_STAT])

    def test_pool_is_reported_once_its_image_is_in_glance(self):
        self._run_periodics()
        self.assert_reports('host4', {})
        self.glance.create(None, dict(self.glance.image1,
                                      id=self.missing_image_id))

        self._run_periodics()

        self.assert_reports('host4', {
            self.expected_key(self.missing_image_id,
                              self.substrate_flavor_id): 1})

    def test_reported_key_is_the_one_the_scheduler_computes(self):
        self._run_periodics()

        server = self.boot('host1', self.substrate_flavor_id)

        # What the scheduler has of the request.
        spec = objects.RequestSpec.get_by_instance_uuid(
            nova_context.get_admin_context(), server['id'])
        requested = substrate_key.substrate_key(spec.image, spec.flavor)
        self.assertEqual(self.key, requested)
        self.assert_spawned(server, notifications.ACTIVATED, 'host1',
                            requested)

    def test_activation_takes_a_ready_substrate_until_the_next_periodic(
            self):
        self._run_periodics()

        server = self.boot('host1', self.substrate_flavor_id)

        self.assert_spawned(server, notifications.ACTIVATED, 'host1',
                            self.key)
        self.assertEqual({self.key: 1}, self.driver('host1').ready_by_key())
        # Each host's pools are its own.
        self.assertEqual({self.key: 1, self.other_key: 1},
                         self.driver('host2').ready_by_key())

        self._run_periodics()

        self.assertEqual({self.key: 2}, self.driver('host1').ready_by_key())
        self.assert_reports('host1', {self.key: 2})

    def test_host_whose_pool_is_empty_boots_until_the_next_periodic(self):
        self._run_periodics()

        first = self.boot('host2', self.substrate_flavor_id)
        second = self.boot('host2', self.substrate_flavor_id)

        self.assert_spawned(first, notifications.ACTIVATED, 'host2',
                            self.key)
        record = self.assert_spawned(second, notifications.BOOTED, 'host2',
                                     self.key)
        self.assertIn('holds no substrate %s' % self.key, record['reason'])
        # Only the key asked for is taken.
        self.assertEqual({self.key: 0, self.other_key: 1},
                         self.driver('host2').ready_by_key())
        # Placement hears of the empty pool at the host's next claim.
        self.assertEqual({reporting.HOST_TRAIT,
                          reporting.key_trait(self.other_key)},
                         self.substrate_traits('host2'))

        self._run_periodics()

        self.assert_reports('host2', {self.key: 1, self.other_key: 1})
        third = self.boot('host2', self.substrate_flavor_id)
        self.assert_spawned(third, notifications.ACTIVATED, 'host2',
                            self.key)

    def test_substrate_flavor_on_a_host_without_its_key_boots(self):
        self._run_periodics()

        server = self.boot('host3', self.substrate_flavor_id)

        record = self.assert_spawned(server, notifications.BOOTED, 'host3',
                                     self.key)
        self.assertIn('holds no substrate', record['reason'])
        self.assertEqual({}, self.driver('host3').ready_by_key())

    def test_normal_flavor_is_booted_and_not_recorded(self):
        self._run_periodics()

        server = self.boot('host1', self.normal_flavor_id)

        self.assertEqual('host1', server['OS-EXT-SRV-ATTR:host'])
        self.assertNotIn(notifications.SYSMETA_MODE, self.sysmeta(server))
        self.assertEqual([], self.spawn_records(server))
        self.assertEqual([], self.substrate_events(server))
        # The pool's image and size, but no substrate asked for.
        self.assertEqual({self.key: 2}, self.driver('host1').ready_by_key())

    def test_live_migrated_instance_is_not_activated_again(self):
        self._run_periodics()
        server = self.boot('host1', self.substrate_flavor_id)

        server = self._live_migrate(server, host='host2',
                                    api=self.admin_api)

        self.assertEqual('host2', server['OS-EXT-SRV-ATTR:host'])
        self.assert_recorded_once(server, notifications.ACTIVATED, 'host1')
        self.assertEqual({self.key: 1, self.other_key: 1},
                         self.driver('host2').ready_by_key())

    def test_cold_migrated_instance_is_not_activated_again(self):
        self._run_periodics()
        server = self.boot('host3', self.substrate_flavor_id)

        server = self._migrate_server(server, host='host1',
                                      api=self.admin_api)
        server = self._confirm_resize(server)

        self.assertEqual('host1', server['OS-EXT-SRV-ATTR:host'])
        self.assert_recorded_once(server, notifications.BOOTED, 'host3')
        self.assertEqual({self.key: 2}, self.driver('host1').ready_by_key())

    def test_hard_reboot_of_a_lost_instance_is_not_an_activation(self):
        self._run_periodics()
        server = self.boot('host1', self.substrate_flavor_id)
        # As after a restart of the hypervisor: FakeDriver spawns the
        # instance again to reboot it.
        del self.driver('host1').instances[server['id']]

        self._reboot_server(server, hard=True)

        self.assertIn(server['id'], self.driver('host1').instances)
        self.assert_recorded_once(server, notifications.ACTIVATED, 'host1')
        self.assertEqual({self.key: 1}, self.driver('host1').ready_by_key())
