"""SubstrateFilter on Nova's fake host states and real RequestSpecs."""

import fixtures
from nova import exception
from nova import objects
from nova.scheduler import filters as nova_filters
from nova.tests.unit.scheduler import fakes
from oslo_utils.fixture import uuidsentinel as uuids
import testtools

from nova_substrate.scheduler import filters
from nova_substrate import substrate_key

objects.register_all()

IMAGE_ID = '6e1b0f7c-5d2a-4c3b-8e9f-a0b1c2d3e4f5'
OTHER_KEY = 'ef' * 16


def flavor(**extra_specs):
    return objects.Flavor(name='m1.substrate', flavorid='42', memory_mb=512,
                          vcpus=1, root_gb=1, ephemeral_gb=0, swap=0,
                          extra_specs=extra_specs)


SUBSTRATE = {'substrate:enabled': 'true'}
STRICT = {'substrate:enabled': 'true', 'substrate:fallback': 'false'}


def request_spec(extra_specs, num_instances=1, hints=None,
                 instance_uuid=uuids.instance0):
    return objects.RequestSpec(
        flavor=flavor(**extra_specs),
        image=objects.ImageMeta.from_dict(
            {'id': IMAGE_ID, 'properties': {'hw_qemu_guest_agent': 'yes'}}),
        instance_uuid=instance_uuid, scheduler_hints=hints or {},
        num_instances=num_instances)


def key_of(spec):
    return substrate_key.substrate_key(spec.image, spec.flavor)


def host(name, stats=None, num_io_ops=0):
    return fakes.FakeHostState(name, name + '-node',
                               {'stats': stats or {},
                                'num_io_ops': num_io_ops})


def holding(key, ready):
    """Stats of a substrate host with `ready` substrates of key."""
    return {'substrate_host': '1', 'substrate.' + key: str(ready),
            'num_instances': '3', 'io_workload': '0'}


class SubstrateFilterTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.filt = filters.SubstrateFilter()

    def names(self, hosts):
        return [h.host for h in hosts]

    def test_normal_flavor_passes_every_host(self):
        spec = request_spec({'hw:cpu_policy': 'shared'})
        hosts = [host('a', holding(key_of(spec), 2)), host('b'),
                 host('c', holding(OTHER_KEY, 1))]
        self.assertEqual(hosts, self.filt.filter_all(hosts, spec))
        self.assertEqual(
            hosts, nova_filters.HostFilterHandler().get_filtered_objects(
                [self.filt], hosts, spec))

    def test_substrate_enabled_false_passes_every_host(self):
        spec = request_spec({'substrate:enabled': 'false'})
        hosts = [host('a', holding(key_of(spec), 2)), host('b')]
        self.assertEqual(hosts, self.filt.filter_all(hosts, spec))

    def test_keeps_hosts_holding_the_key(self):
        spec = request_spec(SUBSTRATE)
        key = key_of(spec)
        hosts = [host('none'), host('two', holding(key, 2)),
                 host('zero', holding(key, 0)),
                 host('other', holding(OTHER_KEY, 3)),
                 host('one', holding(key, 1))]
        self.assertEqual(['two', 'one'],
                         self.names(self.filt.filter_all(hosts, spec)))

    def test_through_nova_filter_handler(self):
        spec = request_spec(SUBSTRATE)
        hosts = [host('none'), host('two', holding(key_of(spec), 2))]
        self.assertEqual(
            ['two'],
            self.names(nova_filters.HostFilterHandler().get_filtered_objects(
                [self.filt], hosts, spec, index=0)))

    def test_none_holding_keeps_every_host(self):
        spec = request_spec(SUBSTRATE)
        hosts = [host('none'), host('zero', holding(key_of(spec), 0)),
                 host('other', holding(OTHER_KEY, 3))]
        self.assertEqual(hosts, self.filt.filter_all(hosts, spec))

    def test_strict_new_build_without_holder_fails(self):
        spec = request_spec(STRICT)
        hosts = [host('none'), host('other', holding(OTHER_KEY, 3))]
        e = self.assertRaises(exception.NoValidHost, self.filt.filter_all,
                              hosts, spec)
        self.assertIn('No host holds a substrate', str(e))
        self.assertIn(IMAGE_ID, str(e))
        self.assertIn(key_of(spec), str(e))
        self.assertIn('substrate:fallback=false', str(e))

    def test_strict_new_build_with_holder_keeps_it(self):
        spec = request_spec(STRICT)
        hosts = [host('none'), host('one', holding(key_of(spec), 1))]
        self.assertEqual(['one'],
                         self.names(self.filt.filter_all(hosts, spec)))

    def test_strict_move_without_holder_keeps_every_host(self):
        self.useFixture(fixtures.MockPatch(
            'nova_substrate.scheduler.request._is_new_build',
            return_value=False))
        spec = request_spec(STRICT)
        hosts = [host('none'), host('other', holding(OTHER_KEY, 3))]
        self.assertEqual(hosts, self.filt.filter_all(hosts, spec))

    def test_strict_move_keeps_holders(self):
        self.useFixture(fixtures.MockPatch(
            'nova_substrate.scheduler.request._is_new_build',
            return_value=False))
        spec = request_spec(STRICT)
        hosts = [host('none'), host('one', holding(key_of(spec), 1))]
        self.assertEqual(['one'],
                         self.names(self.filt.filter_all(hosts, spec)))

    def test_spec_without_context_is_a_new_build(self):
        # No context: no BuildRequest lookup, so no database is touched.
        lookup = self.useFixture(fixtures.MockPatchObject(
            objects.BuildRequest, 'get_by_instance_uuid')).mock
        spec = request_spec(STRICT)
        self.assertRaises(exception.NoValidHost, self.filt.filter_all,
                          [host('none')], spec)
        lookup.assert_not_called()

    def test_rebuild_keeps_every_host(self):
        hints = {'_nova_check_type': ['rebuild']}
        spec = request_spec(SUBSTRATE, hints=hints)
        hosts = [host('none'), host('two', holding(key_of(spec), 2))]
        self.assertEqual(hosts, self.filt.filter_all(hosts, spec))
        strict = request_spec(STRICT, hints=hints)
        self.assertEqual([hosts[0]],
                         self.filt.filter_all([hosts[0]], strict))

    def schedule(self, spec, hosts, chosen, next_uuid):
        """Filter for one instance, then do what Nova does on a pick."""
        kept = self.names(self.filt.filter_all(hosts, spec))
        chosen.num_io_ops += 1
        spec.instance_uuid = next_uuid
        return kept

    def test_multi_create_uses_each_substrate_once(self):
        spec = request_spec(SUBSTRATE, num_instances=3)
        key = key_of(spec)
        two = host('two', holding(key, 2), num_io_ops=4)
        one = host('one', holding(key, 1), num_io_ops=1)
        hosts = [two, host('none'), one]
        self.assertEqual(['two', 'one'],
                         self.schedule(spec, hosts, two, uuids.instance1))
        self.assertEqual(['two', 'one'],
                         self.schedule(spec, hosts, two, uuids.instance2))
        self.assertEqual(['one'],
                         self.schedule(spec, hosts, one, uuids.instance3))

    def test_multi_create_falls_back_once_substrates_are_used(self):
        spec = request_spec(SUBSTRATE, num_instances=2)
        one = host('one', holding(key_of(spec), 1))
        hosts = [one, host('none')]
        self.assertEqual(['one'],
                         self.schedule(spec, hosts, one, uuids.instance1))
        self.assertEqual(['one', 'none'],
                         self.schedule(spec, hosts, one, uuids.instance2))

    def test_strict_multi_create_fails_past_the_substrates(self):
        # No host rather than NoValidHost: Nova then fails the request as
        # one it has too few hosts for, and releases the claims of the two
        # instances placed.
        log = self.useFixture(fixtures.FakeLogger())
        spec = request_spec(STRICT, num_instances=3)
        two = host('two', holding(key_of(spec), 2))
        hosts = [two, host('none')]
        self.assertEqual(['two'],
                         self.schedule(spec, hosts, two, uuids.instance1))
        self.assertEqual(['two'],
                         self.schedule(spec, hosts, two, uuids.instance2))
        self.assertEqual([], self.filt.filter_all(hosts, spec))
        self.assertIn('Instance 3 of the request: No host holds a substrate',
                      log.output)

    def test_same_instance_twice_takes_nothing(self):
        # The filter and the weigher both look at one instance: only a
        # new instance uuid accounts for the host picked before.
        spec = request_spec(SUBSTRATE)
        one = host('one', holding(key_of(spec), 1))
        hosts = [one, host('none')]
        self.assertEqual(['one'], self.names(self.filt.filter_all(hosts,
                                                                  spec)))
        one.num_io_ops += 1
        self.assertEqual(['one'], self.names(self.filt.filter_all(hosts,
                                                                  spec)))

    def test_junk_stats_are_ignored(self):
        spec = request_spec(SUBSTRATE)
        key = key_of(spec)
        junk = [host('words', {'substrate.' + key: 'many'}),
                host('none-value', {'substrate.' + key: None}),
                host('empty', {'substrate.' + key: ''}),
                host('negative', {'substrate.' + key: '-1'}),
                host('float', {'substrate.' + key: '1.5'}),
                host('no-stats')]
        self.assertEqual(junk, self.filt.filter_all(junk, spec))
        kept = self.filt.filter_all(junk + [host('one', holding(key, 1))],
                                    request_spec(SUBSTRATE))
        self.assertEqual(['one'], self.names(kept))

    def test_host_passes(self):
        spec = request_spec(SUBSTRATE)
        self.assertTrue(self.filt.host_passes(
            host('one', holding(key_of(spec), 1)), request_spec(SUBSTRATE)))
        strict = request_spec(STRICT)
        self.assertRaises(exception.NoValidHost, self.filt.host_passes,
                          host('none'), strict)

    def test_runs_for_every_instance(self):
        self.assertTrue(self.filt.run_filter_for_index(2))
