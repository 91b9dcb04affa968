"""What a substrate host tells the scheduler and placement, and pre-warming."""

import os

import fixtures
from nova import context as nova_context
from nova import objects

from nova_substrate.testing import substrate_cloud
from nova_substrate.virt import reporting


class PoolReportingTest(substrate_cloud.SubstrateDriverTestCase):

    def host_stats(self):
        ctx = nova_context.get_admin_context()
        [node] = objects.ComputeNodeList.get_all(ctx)
        return node.stats

    def provider_traits(self):
        rp_uuid = self._get_provider_uuid_by_host(
            self.driver._host.get_hostname())
        return set(self._get_provider_traits(rp_uuid))

    def test_stats_and_traits_follow_activation_and_refill(self):
        key = self.wait_for_substrate()
        # From here the test decides when the pool is refilled.
        self.driver.keeper.pause()
        self._run_periodics()
        key_stat = reporting.KEY_STAT_PREFIX + key
        key_trait = reporting.key_trait(key)

        stats = self.host_stats()
        self.assertEqual('1', stats[reporting.HOST_STAT])
        self.assertEqual('1', stats[key_stat])
        self.assertGreater(int(stats[reporting.MEMORY_STAT]), 0)
        self.assertLessEqual({reporting.HOST_TRAIT, key_trait},
                             self.provider_traits())

        self.wait_for_active(
            self.boot_server(flavor_id=self.substrate_flavor_id))
        self._run_periodics()

        self.assertEqual('0', self.host_stats()[key_stat])
        traits = self.provider_traits()
        self.assertIn(reporting.HOST_TRAIT, traits)
        self.assertNotIn(key_trait, traits)

        self.driver.keeper.run_once(nova_context.get_admin_context())
        self._run_periodics()

        # The configured pool keeps one; the request also made the key a
        # demand pool, which keeps substrates_per_key (2).
        self.assertEqual('2', self.host_stats()[key_stat])
        self.assertIn(key_trait, self.provider_traits())


class AggregateImageCacheTest(substrate_cloud.SubstrateDriverTestCase):
    """POST /os-aggregates/{id}/images builds the image's substrates."""

    def _configure_compute(self):
        super()._configure_compute()
        # No upkeep of its own: only the pre-warm request builds.
        self.useFixture(fixtures.MockPatch(
            'nova_substrate.virt.keeper.PoolKeeper.start'))

    def test_precaching_an_image_docks_its_configured_substrates(self):
        key = self.substrate_key()
        self.assertIsNone(self.driver.pool.get(key))
        aggregate = self.admin_api.post_aggregate(
            {'aggregate': {'name': 'substrate-hosts'}})
        self.admin_api.add_host_to_aggregate(aggregate['id'], 'compute')

        self.admin_api.api_post(
            '/os-aggregates/%s/images' % aggregate['id'],
            {'cache': [{'id': self.image_id}]}, check_response_status=[202])

        self.wait_for_substrate(key)
        template = self.driver.pool.get(key)
        self.assertEqual(self.image_id, template.meta['labels']['image_id'])
        self.assertTrue(os.path.exists(template.meta['base']))
        self.assertEqual(os.path.join(self.instances_path, '_base'),
                         os.path.dirname(template.meta['base']))


class PoolUpkeepTest(substrate_cloud.SubstrateDriverTestCase):

    def test_substrates_of_a_deleted_image_are_purged(self):
        key = self.wait_for_substrate()
        layer_id = self.driver.pool.get(key).meta['layer_id']

        self.glance.delete(nova_context.get_admin_context(), self.image_id)

        self._wait_for(lambda: self.driver.pool.get(key) is None, 30,
                       'the substrate of the deleted image to go')
        self._wait_for(lambda: layer_id not in self.driver.pool.layers(), 30,
                       'its layer to go')
        self.assertEqual([], self.pool_files('templates'))

    def test_substrates_of_a_changed_image_are_purged(self):
        key = self.wait_for_substrate()
        ctx = nova_context.get_admin_context()

        # A property that shapes the domain: the key it belongs to is gone.
        self.glance.update(ctx, self.image_id,
                           {'properties': {'hw_video_model': 'vga'}})

        self._wait_for(lambda: self.driver.pool.get(key) is None, 30,
                       'the substrate of the changed image to go')
        # The configured pool is built again, for the image as it is now.
        new_key = self.substrate_key()
        self.assertNotEqual(key, new_key)
        self.wait_for_substrate(new_key)
