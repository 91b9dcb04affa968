"""SubstrateWeigher through Nova's weight handler, on Nova's fakes."""

import fixtures
from nova import objects
from nova.scheduler import weights as nova_weights
from nova.tests.unit.scheduler import fakes
from oslo_config import fixture as config_fixture
from oslo_utils.fixture import uuidsentinel as uuids
import testtools

from nova_substrate import conf as substrate_conf
from nova_substrate.scheduler import weights
from nova_substrate import substrate_key

objects.register_all()

IMAGE_ID = '6e1b0f7c-5d2a-4c3b-8e9f-a0b1c2d3e4f5'
OTHER_IMAGE_ID = '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d'
OTHER_KEY = 'ef' * 16
SUBSTRATE = {'substrate:enabled': 'true'}


def request_spec(extra_specs=None, instance_uuid=uuids.instance0):
    return objects.RequestSpec(
        flavor=objects.Flavor(name='m1.substrate', flavorid='42',
                              memory_mb=512, vcpus=1, root_gb=1,
                              ephemeral_gb=0, swap=0,
                              extra_specs=extra_specs or {}),
        image=objects.ImageMeta.from_dict({'id': IMAGE_ID,
                                           'properties': {}}),
        instance_uuid=instance_uuid, scheduler_hints={}, num_instances=1)


def key_of(spec):
    return substrate_key.substrate_key(spec.image, spec.flavor)


def host(name, stats=None, aggregates=None, num_io_ops=0):
    return fakes.FakeHostState(name, name + '-node',
                               {'stats': stats or {},
                                'aggregates': aggregates or [],
                                'num_io_ops': num_io_ops})


def warm(image_id=IMAGE_ID, size='52428800'):
    return {'substrate_host': '1', 'substrate_cache.' + image_id: size}


def aggregate(multiplier):
    return objects.Aggregate(
        id=1, metadata={weights.AGGREGATE_KEY: multiplier})


class SubstrateWeigherTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(
            substrate_conf.CONF))
        self.weigher = weights.SubstrateWeigher()

    def weighed(self, hosts, spec):
        """{host: weight}, and the hosts from heaviest to lightest."""
        result = nova_weights.HostWeightHandler().get_weighed_objects(
            [self.weigher], hosts, spec)
        return ({w.obj.host: w.weight for w in result},
                [w.obj.host for w in result])

    def hosts(self, key):
        return [host('nothing'),
                host('warm', warm()),
                host('one', {'substrate.' + key: '1'}),
                host('other-key', {'substrate.' + OTHER_KEY: '5'}),
                host('two', {'substrate.' + key: '2'}),
                host('other-image', warm(OTHER_IMAGE_ID))]

    def test_substrate_flavor_order(self):
        spec = request_spec(SUBSTRATE)
        by_host, order = self.weighed(self.hosts(key_of(spec)), spec)
        # Raw weights 4, 3, 1, 0 normalized over [0, 4], times 10.
        self.assertEqual({'two': 10.0, 'one': 7.5, 'warm': 2.5,
                          'nothing': 0.0, 'other-key': 0.0,
                          'other-image': 0.0}, by_host)
        self.assertEqual(['two', 'one', 'warm'], order[:3])

    def test_raw_weights(self):
        spec = request_spec(SUBSTRATE)
        hosts = self.hosts(key_of(spec))
        raw = self.weigher.weigh_objects(
            [nova_weights.WeighedHost(h, 0.0) for h in hosts], spec)
        self.assertEqual([0, 1, 3, 0, 4, 0], raw)

    def test_normal_flavor_prefers_warm_cache(self):
        spec = request_spec({'hw:cpu_policy': 'shared'})
        by_host, order = self.weighed(self.hosts(key_of(
            request_spec(SUBSTRATE))), spec)
        self.assertEqual('warm', order[0])
        self.assertEqual(10.0, by_host['warm'])
        self.assertEqual({0.0}, {w for h, w in by_host.items()
                                 if h != 'warm'})

    def test_junk_cache_stat_is_cold(self):
        spec = request_spec()
        by_host, _ = self.weighed(
            [host('junk', warm(size='lots')), host('empty', warm(size='0')),
             host('warm', warm())], spec)
        self.assertEqual({'junk': 0.0, 'empty': 0.0, 'warm': 10.0},
                         by_host)

    def test_image_without_id_has_no_warm_cache(self):
        spec = request_spec()
        spec.image = objects.ImageMeta.from_dict({'properties': {}})
        by_host, _ = self.weighed([host('a', warm()), host('b')], spec)
        self.assertEqual({'a': 0.0, 'b': 0.0}, by_host)

    def test_multiplier_from_config(self):
        self.conf.config(weight_multiplier=2.0, group='substrate')
        spec = request_spec(SUBSTRATE)
        by_host, _ = self.weighed(self.hosts(key_of(spec)), spec)
        self.assertEqual(2.0, by_host['two'])
        self.assertEqual(0.5, by_host['warm'])

    def test_negative_multiplier_avoids_substrate_hosts(self):
        self.conf.config(weight_multiplier=-1.0, group='substrate')
        spec = request_spec(SUBSTRATE)
        _, order = self.weighed(self.hosts(key_of(spec)), spec)
        self.assertEqual(['warm', 'one', 'two'], order[-3:])

    def test_aggregate_overrides_multiplier(self):
        spec = request_spec(SUBSTRATE)
        key = key_of(spec)
        hosts = [host('two', {'substrate.' + key: '2'},
                      aggregates=[aggregate('-1.0')]),
                 host('one', {'substrate.' + key: '1'}),
                 host('nothing')]
        by_host, order = self.weighed(hosts, spec)
        self.assertEqual({'two': -1.0, 'one': 7.5, 'nothing': 0.0},
                         by_host)
        self.assertEqual(['one', 'nothing', 'two'], order)

    def test_undecodable_aggregate_value_uses_config(self):
        log = self.useFixture(fixtures.FakeLogger())
        spec = request_spec(SUBSTRATE)
        hosts = [host('two', {'substrate.' + key_of(spec): '2'},
                      aggregates=[aggregate('heavy')]),
                 host('nothing')]
        by_host, _ = self.weighed(hosts, spec)
        self.assertEqual(10.0, by_host['two'])
        self.assertIn(weights.AGGREGATE_KEY, log.output)

    def test_multi_create_counts_used_substrates(self):
        spec = request_spec(SUBSTRATE)
        key = key_of(spec)
        two = host('two', {'substrate.' + key: '2'}, num_io_ops=7)
        one = host('one', {'substrate.' + key: '1'})
        hosts = [two, one, host('nothing')]
        by_host, order = self.weighed(hosts, spec)
        self.assertEqual('two', order[0])
        # Nova placed the first instance on 'two' and weighs the second.
        two.num_io_ops += 1
        spec.instance_uuid = uuids.instance1
        by_host, _ = self.weighed(hosts, spec)
        self.assertEqual(by_host['one'], by_host['two'])
        two.num_io_ops += 1
        spec.instance_uuid = uuids.instance2
        by_host, order = self.weighed(hosts, spec)
        self.assertEqual(['one', 'two', 'nothing'], order)
        self.assertEqual(0.0, by_host['two'])

    def test_one_host_is_not_weighed(self):
        spec = request_spec(SUBSTRATE)
        by_host, _ = self.weighed([host('nothing')], spec)
        self.assertEqual({'nothing': 0.0}, by_host)
