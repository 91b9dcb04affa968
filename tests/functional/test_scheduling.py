"""SubstrateFilter and SubstrateWeigher in Nova's scheduler.

Nova's in-process cloud (API, conductor, scheduler, placement) with twelve
nova-computes running ``substrate.FakeSubstrateDriver``, each with its own
``[substrate] pools``, and the scheduler configured as an operator would:
Nova's default filters plus SubstrateFilter, all of Nova's weighers plus
SubstrateWeigher. The tests look at where instances land and whether they
were activated or booted.
"""

# Before anything imports Nova: it makes Nova's threading choice for the
# process (tests/functional/__init__.py does too).
import nova_substrate.testing  # noqa: F401

import collections

import fixtures
from nova import conf as nova_conf
from nova import context as nova_context
from nova import objects
from nova.tests.functional.api import client as api_client
from oslo_messaging.notify import _impl_test as messaging_test

from nova_substrate import notifications
from nova_substrate.scheduler import filters as substrate_filters
from nova_substrate.scheduler import weights as substrate_weights
from nova_substrate import substrate_key
from nova_substrate.testing import fake_cloud
from nova_substrate.virt import reporting

CONF = nova_conf.CONF

SUBSTRATE_FLAVOR = 'm1.substrate'
SPREAD_FLAVOR = 'm1.spread'
UNPOOLED_FLAVOR = 'm1.unpooled'
NORMAL_FLAVOR = 'm1.normal'
# Small enough for many servers on MediumFakeDriver's 10 vCPUs and 8 GiB.
FLAVOR = dict(vcpu=1, disk=1, ephemeral=0, swap=0)

HOSTS = ['host%02d' % i for i in range(1, 13)]
# host01 and host02 hold the same key, in different numbers.
RICH, POOR = 'host01', 'host02'
# Four hosts with two substrates each of the spread flavor's key.
SPREAD_HOSTS = ['host03', 'host04', 'host05', 'host06']
# Holds the substrate flavor, but for another image: another key.
OTHER_IMAGE_HOST = 'host07'
# host08 to host12 hold nothing.
EMPTY_HOSTS = HOSTS[7:]


class _SchedulingTestBase(fake_cloud.FakeSubstrateCloudTestCase):

    ADMIN_API = True

    def setUp(self):
        super().setUp()
        self.image_id = self.glance.image1['id']
        self.other_image_id = self.glance.image3['id']

        # Before the computes start: their pools name these flavors.
        enabled = {substrate_key.ENABLED: 'true'}
        self.substrate_flavor_id = self._create_flavor(
            name=SUBSTRATE_FLAVOR, memory_mb=512, extra_spec=enabled,
            **FLAVOR)
        self.spread_flavor_id = self._create_flavor(
            name=SPREAD_FLAVOR, memory_mb=256, extra_spec=enabled, **FLAVOR)
        # A substrate flavor of a size no host keeps a pool of.
        self.unpooled_flavor_id = self._create_flavor(
            name=UNPOOLED_FLAVOR, memory_mb=1024, extra_spec=enabled,
            **FLAVOR)
        self.normal_flavor_id = self._create_flavor(
            name=NORMAL_FLAVOR, memory_mb=512, **FLAVOR)

        self.key = self.expected_key(self.image_id, self.substrate_flavor_id)
        self.spread_key = self.expected_key(self.image_id,
                                            self.spread_flavor_id)
        self.other_key = self.expected_key(self.other_image_id,
                                           self.substrate_flavor_id)

        pools = collections.defaultdict(list)
        pools[RICH] = [self.pool(self.image_id, self.substrate_flavor_id, 3)]
        pools[POOR] = [self.pool(self.image_id, self.substrate_flavor_id, 1)]
        for host in SPREAD_HOSTS:
            pools[host] = [self.pool(self.image_id, self.spread_flavor_id, 2)]
        pools[OTHER_IMAGE_HOST] = [
            self.pool(self.other_image_id, self.substrate_flavor_id, 2)]
        # The driver reads [substrate] pools when it is created, so each
        # compute keeps the pools set just before it starts.
        for host in HOSTS:
            self.flags(pools=pools[host], group='substrate')
            self._start_compute(host)
        self._run_periodics()

    def _setup_scheduler_service(self):
        # The scheduler loads its filters and weighers when it starts;
        # test.TestCase's config fixture resets options set before setUp.
        self.flags(
            available_filters=[
                'nova.scheduler.filters.all_filters',
                'nova_substrate.scheduler.filters.SubstrateFilter'],
            enabled_filters=(list(CONF.filter_scheduler.enabled_filters) +
                             ['SubstrateFilter']),
            weight_classes=[
                'nova.scheduler.weights.all_weighers',
                'nova_substrate.scheduler.weights.SubstrateWeigher'],
            group='filter_scheduler')
        return super()._setup_scheduler_service()

    # -- hosts -------------------------------------------------------------

    def driver(self, host):
        return self.computes[host].manager.driver

    def warm_cache(self, host, image_id):
        """Make host report a warm boot cache of image_id from now on.

        FakeSubstrateDriver keeps no boot caches; the stat is what
        SubstrateDriver reports for one.
        """
        driver = self.driver(host)
        report = driver.get_available_resource

        def with_cache(nodename):
            data = report(nodename)
            data['stats'][reporting.CACHE_STAT_PREFIX + image_id] = str(
                64 * 1024 * 1024)
            return data

        self.useFixture(fixtures.MockPatchObject(
            driver, 'get_available_resource', with_cache))

    def record_filtering(self):
        """[(hosts given, hosts kept)] of each SubstrateFilter pass."""
        passes = []
        real = substrate_filters.SubstrateFilter.filter_all

        def filter_all(filter_, hosts, spec_obj):
            hosts = list(hosts)
            kept = real(filter_, hosts, spec_obj)
            passes.append(({h.host for h in hosts}, {h.host for h in kept}))
            return kept

        self.useFixture(fixtures.MockPatchObject(
            substrate_filters.SubstrateFilter, 'filter_all', filter_all))
        return passes

    # -- servers -----------------------------------------------------------

    def boot(self, flavor_id, image_id=None, expected_state='ACTIVE',
             host=None):
        return self._create_server(
            image_uuid=image_id or self.image_id, flavor_id=flavor_id,
            networks='none', host=host, expected_state=expected_state)

    def multi_create(self, flavor_id, count, expected_state='ACTIVE'):
        """Create count servers in one request."""
        body = self._build_server(image_uuid=self.image_id,
                                  flavor_id=flavor_id, networks='none')
        body.update(min_count=count, max_count=count,
                    return_reservation_id=True)
        reservation_id = self.api.post_server(
            {'server': body})['reservation_id']
        servers = self.api.get_servers(
            search_opts={'reservation_id': reservation_id})
        self.assertEqual(count, len(servers))
        return [self._wait_for_state_change(server, expected_state)
                for server in servers]

    def host_of(self, server):
        return self.admin_api.get_server(
            server['id'])['OS-EXT-SRV-ATTR:host']

    def spawn_mode(self, server):
        """'activated', 'booted', or None when the driver recorded none."""
        ctx = nova_context.get_admin_context()
        # An instance that was never scheduled is in cell0.
        cell = objects.InstanceMapping.get_by_instance_uuid(
            ctx, server['id']).cell_mapping
        with nova_context.target_cell(ctx, cell) as cctxt:
            return objects.Instance.get_by_uuid(
                cctxt, server['id'], expected_attrs=['system_metadata']
            ).system_metadata.get(notifications.SYSMETA_MODE)

    def substrate_events(self, servers):
        """The substrate notifications about servers, in order."""
        ids = {s['id'] for s in servers}
        # The test driver's list is the process's, kept across tests.
        return [m['event_type']
                for _ctx, m, _prio, _retry in messaging_test.NOTIFICATIONS
                if m['event_type'].startswith('substrate.') and
                m['payload'].get('instance_uuid') in ids]

    def assert_spawned(self, server, mode, hosts):
        """The server is ACTIVE on one of hosts, spawned as mode."""
        self.assertEqual('ACTIVE', server['status'])
        host = self.host_of(server)
        self.assertIn(host, hosts)
        self.assertEqual(mode, self.spawn_mode(server))
        return host

    def set_aggregate_multiplier(self, name, hosts, multiplier):
        aggregate = self.admin_api.post_aggregate(
            {'aggregate': {'name': name}})
        for host in hosts:
            self.admin_api.add_host_to_aggregate(aggregate['id'], host)
        self.admin_api.post_aggregate_action(aggregate['id'], {
            'set_metadata': {'metadata': {
                substrate_weights.AGGREGATE_KEY: str(multiplier)}}})


class PlacementTest(_SchedulingTestBase):
    """Which hosts SubstrateFilter keeps."""

    def test_substrate_flavor_lands_on_hosts_holding_its_key(self):
        self.assertEqual({self.spread_key: 2},
                         self.driver(SPREAD_HOSTS[0]).ready_by_key())
        landed = []
        for _ in range(6):
            server = self.boot(self.spread_flavor_id)
            landed.append(self.assert_spawned(
                server, notifications.ACTIVATED, SPREAD_HOSTS))
            # A host's stats show what it took only once it reports
            # again: the fake refills and reports at its periodic, as the
            # real driver refills in the background.
            self._run_periodics()
        # SubstrateWeigher weighs the four holders alike, so Nova's
        # weighers (free RAM first) spread the instances among them.
        self.assertEqual(set(SPREAD_HOSTS), set(landed))

        # The key includes the image: the same flavor with another image
        # goes to the one host holding that image's substrate.
        server = self.boot(self.substrate_flavor_id,
                           image_id=self.other_image_id)
        self.assert_spawned(server, notifications.ACTIVATED,
                            [OTHER_IMAGE_HOST])

    def test_requests_past_the_reported_substrates_boot_never_fail(self):
        # Separate requests, with no compute reporting in between: the
        # scheduler still sees the pools as they were reported, so later
        # requests are sent to hosts whose substrates are gone. They boot.
        servers = [self.boot(self.substrate_flavor_id) for _ in range(6)]

        modes = [self.spawn_mode(s) for s in servers]
        self.assertEqual(['ACTIVE'] * 6, [s['status'] for s in servers])
        # host01 and host02 reported four substrates of the key together.
        self.assertLessEqual(modes.count(notifications.ACTIVATED), 4)
        self.assertGreaterEqual(modes.count(notifications.BOOTED), 2)
        self.assertEqual(set(), set(modes) - {notifications.ACTIVATED,
                                              notifications.BOOTED})

    def test_flavor_no_host_holds_falls_back_to_a_normal_boot(self):
        passes = self.record_filtering()

        server = self.boot(self.unpooled_flavor_id)

        self.assert_spawned(server, notifications.BOOTED, HOSTS)
        # Fallback keeps every candidate.
        self.assertEqual([(set(HOSTS), set(HOSTS))], passes)
        self.assertEqual([notifications.BOOT_END],
                         self.substrate_events([server]))

    def test_strict_flavor_no_host_holds_fails(self):
        strict_flavor_id = self._create_flavor(
            name='m1.strict', memory_mb=1024,
            extra_spec={substrate_key.ENABLED: 'true',
                        substrate_key.FALLBACK: 'false'},
            **FLAVOR)

        server = self.boot(strict_flavor_id, expected_state='ERROR')

        message = server['fault']['message']
        self.assertIn('No valid host was found', message)
        self.assertIn('No host holds a substrate for image %s'
                      % self.image_id, message)
        self.assertIn('substrate:fallback=false', message)
        self.assertIsNone(self.host_of(server))
        self.assertIsNone(self.spawn_mode(server))

    def test_strict_flavor_activates_where_a_host_holds_one(self):
        strict_flavor_id = self._create_flavor(
            name='m1.strict', memory_mb=512,
            extra_spec={substrate_key.ENABLED: 'true',
                        substrate_key.FALLBACK: 'false'},
            **FLAVOR)
        # The substrate: specs are not part of the key: the pools of
        # m1.substrate serve this flavor too.
        self.assertEqual(self.key, self.expected_key(self.image_id,
                                                     strict_flavor_id))

        server = self.boot(strict_flavor_id)

        self.assert_spawned(server, notifications.ACTIVATED, [RICH, POOR])

    def test_multi_create_takes_each_hosts_substrates_once(self):
        passes = self.record_filtering()

        servers = self.multi_create(self.spread_flavor_id, 8)

        landed = collections.Counter()
        for server in servers:
            landed[self.assert_spawned(
                server, notifications.ACTIVATED, SPREAD_HOSTS)] += 1
        self.assertEqual({host: 2 for host in SPREAD_HOSTS}, dict(landed))
        # No host was asked for more than it reported: each gave both of
        # its substrates, none booted an instance for want of one.
        for host in SPREAD_HOSTS:
            self.assertEqual({self.spread_key: 0},
                             self.driver(host).ready_by_key(), host)
        self.assertEqual([notifications.ACTIVATE_END] * 8,
                         self.substrate_events(servers))
        # The filter ran for each instance and only ever kept holders.
        self.assertGreaterEqual(len(passes), 8)
        self.assertEqual(set(HOSTS), passes[0][0])
        for _given, kept in passes:
            self.assertLessEqual(kept, set(SPREAD_HOSTS))

    def test_strict_multi_create_past_the_substrates_claims_nothing(self):
        strict_flavor_id = self._create_flavor(
            name='m1.strict', memory_mb=256,
            extra_spec={substrate_key.ENABLED: 'true',
                        substrate_key.FALLBACK: 'false'},
            **FLAVOR)
        self.assertEqual(self.spread_key,
                         self.expected_key(self.image_id, strict_flavor_id))

        # Eight substrates for nine instances: the ninth finds none.
        servers = self.multi_create(strict_flavor_id, 9,
                                    expected_state='ERROR')

        # The claims of the eight placed before the ninth failed are
        # released: no host is left with usage for instances that never
        # reached it.
        for host in HOSTS:
            usages = self._get_provider_usages(
                self._get_provider_uuid_by_host(host))
            self.assertEqual({0}, set(usages.values()), host)
        # Failed by Nova, as it releases them; the reason is logged.
        for server in servers:
            self.assertIn('There are not enough hosts available',
                          server['fault']['message'])
            self.assertIsNone(self.host_of(server))
        self.assertIn('Instance 9 of the request: No host holds a '
                      'substrate', self.stdlog.logger.output)
        for host in SPREAD_HOSTS:
            self.assertEqual({self.spread_key: 2},
                             self.driver(host).ready_by_key(), host)

    def test_normal_flavor_is_not_filtered_nor_activated(self):
        passes = self.record_filtering()
        ready_before = {h: self.driver(h).ready_by_key() for h in HOSTS}

        server = self.boot(self.normal_flavor_id)

        self.assertEqual('ACTIVE', server['status'])
        self.assertIn(self.host_of(server), HOSTS)
        self.assertIsNone(self.spawn_mode(server))
        # The filter passes every host through for a flavor without
        # substrate specs; with no warm cache anywhere the weigher weighs
        # all hosts 0, and Nova's weighers alone choose.
        self.assertEqual([(set(HOSTS), set(HOSTS))], passes)
        self.assertEqual(ready_before,
                         {h: self.driver(h).ready_by_key() for h in HOSTS})
        self.assertEqual([], self.substrate_events([server]))


class WeighingTest(_SchedulingTestBase):
    """How SubstrateWeigher orders the hosts the filters kept."""

    def test_warm_cache_wins_when_no_host_holds_the_key(self):
        warm = EMPTY_HOSTS[-1]
        # By free RAM, vCPUs and disk, Nova's weighers rank the warm host
        # last: it already runs an instance, the others none.
        self.boot(self.normal_flavor_id, host=warm)
        self.warm_cache(warm, self.image_id)
        self._run_periodics()

        server = self.boot(self.unpooled_flavor_id)

        # No host holds the key, so the filter keeps all hosts, and the
        # weigher gives the warm host 1, every other 0. Normalized and
        # multiplied by the default 10 that is 10 points, more than the at
        # most 1 point each of Nova's RAM, CPU and disk weighers.
        self.assert_spawned(server, notifications.BOOTED, [warm])

    def test_host_with_more_ready_substrates_wins(self):
        server = self.boot(self.substrate_flavor_id)

        # Both hold the key; the weigher gives 2 + ready: 5 to the host
        # with 3 ready, 3 to the host with 1. Normalized by the largest
        # that is 1.0 and 0.6, times 10: the 4 points between them decide,
        # as the two hosts are alike to Nova's weighers.
        self.assert_spawned(server, notifications.ACTIVATED, [RICH])
        self.assertEqual({self.key: 2}, self.driver(RICH).ready_by_key())
        self.assertEqual({self.key: 1}, self.driver(POOR).ready_by_key())

    def test_aggregate_negative_multiplier_avoids_warm_cache_host(self):
        avoided, preferred = EMPTY_HOSTS[0], EMPTY_HOSTS[1]
        for host in (avoided, preferred):
            self.warm_cache(host, self.image_id)
        self._run_periodics()
        self.set_aggregate_multiplier('cold', [avoided], -20)

        server = self.boot(self.normal_flavor_id)

        # Both warm hosts weigh 1, every other 0, so both normalize to
        # 1.0: the aggregate's -20 makes the avoided host the lowest of
        # all, the default 10 the other the highest.
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual(preferred, self.host_of(server))
        self.assertIsNone(self.spawn_mode(server))

    def test_aggregate_negative_multiplier_prefers_fewer_substrates(self):
        self.set_aggregate_multiplier('drain', [RICH, POOR], -20)

        server = self.boot(self.substrate_flavor_id)

        # The filter still keeps only the two holders; the weigher's 1.0
        # and 0.6 become -20 and -12, so the host with 1 ready wins.
        self.assert_spawned(server, notifications.ACTIVATED, [POOR])
        self.assertEqual({self.key: 3}, self.driver(RICH).ready_by_key())

    def test_extra_specs_are_validated(self):
        flavor_id = self.normal_flavor_id

        def post(specs):
            return self.admin_api.post_extra_spec(
                flavor_id, {'extra_specs': specs})

        for bad in ({substrate_key.ENABLED: 'maybe'},
                    {substrate_key.FALLBACK: 'sometimes'},
                    {'substrate:bogus': 'true'}):
            error = self.assertRaises(api_client.OpenStackApiException,
                                      post, bad)
            self.assertEqual(400, error.response.status_code, bad)
        for good in ({substrate_key.ENABLED: 'true'},
                     {substrate_key.FALLBACK: 'false'}):
            self.assertEqual(200, post(good).status, good)
        self.assertEqual(
            {substrate_key.ENABLED: 'true', substrate_key.FALLBACK: 'false'},
            self.admin_api.get_flavor(flavor_id)['extra_specs'])
