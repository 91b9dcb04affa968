"""Pool targets: configured pools and the demand seen on the host."""

from nova import objects
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools

from nova_substrate import conf as substrate_conf
from nova_substrate.virt import pools

objects.register_all()

IMAGE_1 = '8a0c6f2e-1b3d-4e5f-a6b7-c8d9e0f1a2b3'
IMAGE_2 = '3f2e1d0c-9b8a-4765-8432-10fedcba9876'
NOW = 1700000000.0


def source(image_id=IMAGE_1, name='m1.substrate', flavorid='42',
           memory_mb=512):
    image_meta = objects.ImageMeta.from_dict({'id': image_id,
                                              'properties': {}})
    flavor = objects.Flavor(memory_mb=memory_mb, vcpus=1, root_gb=1,
                            ephemeral_gb=0, swap=0, name=name,
                            flavorid=flavorid,
                            extra_specs={'substrate:enabled': 'true'})
    return pools.Source(image_meta, flavor)


def by_key(targets):
    return {t.key: t for t in targets}


class ConfiguredPoolsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.targets = pools.PoolTargets(
            ['%s:m1.substrate:3' % IMAGE_1, '%s:42:1' % IMAGE_2],
            demand_pools=False)

    def test_unresolved_until_learned(self):
        self.assertEqual([(IMAGE_1, 'm1.substrate', 3), (IMAGE_2, '42', 1)],
                         [(p.image_id, p.flavor, p.count)
                          for p in self.targets.unresolved()])
        self.assertEqual([], self.targets.targets(now=NOW))

    def test_matched_by_flavor_name(self):
        src = source(IMAGE_1, name='m1.substrate', flavorid='99')
        self.targets.learn(src)
        [pool] = self.targets.unresolved()
        self.assertEqual(IMAGE_2, pool.image_id)
        [target] = self.targets.targets(now=NOW)
        self.assertEqual((src.key, 3, pools.CONFIG),
                         (target.key, target.count, target.origin))
        self.assertIs(src, target.source)

    def test_matched_by_flavor_id(self):
        src = source(IMAGE_2, name='m1.other', flavorid='42')
        self.targets.learn(src)
        [pool] = self.targets.unresolved()
        self.assertEqual(IMAGE_1, pool.image_id)
        [target] = self.targets.targets(now=NOW)
        self.assertEqual((src.key, 1, pools.CONFIG),
                         (target.key, target.count, target.origin))

    def test_not_matched(self):
        # The right image on another flavor, and the right flavor of
        # another image.
        self.targets.learn(source(IMAGE_1, name='m1.small', flavorid='2'))
        self.targets.learn(source(IMAGE_2, name='m1.substrate',
                                  flavorid='7'))
        self.assertEqual(2, len(self.targets.unresolved()))
        self.assertEqual([], self.targets.targets(now=NOW))

    def test_both_resolved(self):
        one = source(IMAGE_1)
        two = source(IMAGE_2)
        self.targets.learn(one)
        self.targets.learn(two)
        self.assertEqual([], self.targets.unresolved())
        found = by_key(self.targets.targets(now=NOW))
        self.assertEqual({one.key: 3, two.key: 1},
                         {k: t.count for k, t in found.items()})

    def test_for_image(self):
        [pool] = self.targets.for_image(IMAGE_1)
        self.assertEqual(('m1.substrate', 3), (pool.flavor, pool.count))
        self.assertEqual([], self.targets.for_image('no-such-image'))

    def test_requests_ignored_without_demand_pools(self):
        src = source(IMAGE_1, name='m1.other', flavorid='9')
        for i in range(3):
            self.targets.record_request(src, now=NOW + i)
        self.assertEqual([], self.targets.targets(now=NOW + 10))


class DemandTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.targets = pools.PoolTargets([], demand_window=3600, floor=2,
                                         ceiling=4)
        self.source = source()

    def request(self, count, at=NOW, src=None):
        for i in range(count):
            self.targets.record_request(src or self.source, now=at + i)

    def count(self, now):
        found = by_key(self.targets.targets(now=now))
        if self.source.key not in found:
            return None
        target = found[self.source.key]
        self.assertEqual(pools.DEMAND, target.origin)
        return target.count

    def test_one_request_keeps_the_floor(self):
        self.request(1)
        self.assertEqual(2, self.count(NOW + 1))

    def test_count_follows_requests(self):
        self.request(3)
        self.assertEqual(3, self.count(NOW + 10))

    def test_count_capped_at_ceiling(self):
        self.request(10)
        self.assertEqual(4, self.count(NOW + 20))

    def test_old_requests_expire(self):
        self.request(3, at=NOW)
        self.request(2, at=NOW + 3000)
        self.assertEqual(4, self.count(NOW + 3100))
        # Those of NOW..NOW+2 are out of the window, two are left.
        self.assertEqual(2, self.count(NOW + 3700))

    def test_key_dropped_after_the_window(self):
        self.request(3)
        self.assertIsNone(self.count(NOW + 3603))
        self.assertNotIn(self.source.key, self.targets._requests)
        # Demand starts again from scratch.
        self.request(1, at=NOW + 4000)
        self.assertEqual(2, self.count(NOW + 4001))

    def test_keys_counted_apart(self):
        other = source(memory_mb=1024)
        self.request(3)
        self.request(1, src=other)
        found = by_key(self.targets.targets(now=NOW + 5))
        self.assertEqual({self.source.key: 3, other.key: 2},
                         {k: t.count for k, t in found.items()})

    def test_request_learns_the_source(self):
        self.request(1)
        [target] = self.targets.targets(now=NOW)
        self.assertIs(self.source, target.source)


class ConfiguredAndDemandedTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.targets = pools.PoolTargets(['%s:42:3' % IMAGE_1], floor=2,
                                         ceiling=4)
        self.source = source()

    def target(self, now):
        [target] = self.targets.targets(now=now)
        self.assertEqual(self.source.key, target.key)
        return target.count, target.origin

    def test_configured_count_wins(self):
        self.targets.record_request(self.source, now=NOW)
        self.assertEqual((3, pools.CONFIG), self.target(NOW + 1))

    def test_demand_count_wins(self):
        for i in range(5):
            self.targets.record_request(self.source, now=NOW + i)
        self.assertEqual((4, pools.DEMAND), self.target(NOW + 10))

    def test_configured_pool_outlives_demand(self):
        for i in range(5):
            self.targets.record_request(self.source, now=NOW + i)
        self.assertEqual((3, pools.CONFIG), self.target(NOW + 7200))


class FromConfTest(testtools.TestCase):

    def test_from_conf(self):
        conf = cfg.ConfigOpts()
        substrate_conf.register_opts(conf)
        fixture = self.useFixture(config_fixture.Config(conf))
        conf([], default_config_files=[])
        fixture.config(pools=['%s:m1.substrate:3' % IMAGE_1],
                       demand_pools=False, demand_window=600,
                       substrates_per_key=1, max_substrates_per_key=8,
                       group='substrate')
        targets = pools.PoolTargets.from_conf(conf)
        self.assertEqual([(IMAGE_1, 'm1.substrate', 3)],
                         [(p.image_id, p.flavor, p.count)
                          for p in targets.configured])
        self.assertFalse(targets.demand_pools)
        self.assertEqual(600, targets.demand_window)
        self.assertEqual((1, 8), (targets.floor, targets.ceiling))


class ForgetImageTest(testtools.TestCase):

    def test_deleted_or_changed_image_is_resolved_again_and_not_demanded(
            self):
        targets = pools.PoolTargets(['%s:m1.substrate:3' % IMAGE_1],
                                    demand_window=3600, floor=2, ceiling=4)
        targets.learn(source())
        targets.record_request(source(IMAGE_1, 'm1.other', '43', 1024),
                               now=NOW)
        targets.record_request(source(IMAGE_2), now=NOW)
        self.assertEqual(3, len(targets.targets(now=NOW)))

        targets.forget_image(IMAGE_1)

        self.assertEqual([IMAGE_1],
                         [p.image_id for p in targets.unresolved()])
        self.assertEqual([IMAGE_2], [t.source.image_meta.id
                                     for t in targets.targets(now=NOW)])
