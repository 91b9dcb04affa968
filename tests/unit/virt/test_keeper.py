"""Pool upkeep: builds, refills, purges and the thread that runs them."""

import fixtures
from nova import objects
import testtools

from nova_substrate.engine import exception
from nova_substrate.virt import keeper
from nova_substrate.virt import pools

objects.register_all()

IMAGE_1 = '8a0c6f2e-1b3d-4e5f-a6b7-c8d9e0f1a2b3'
IMAGE_2 = '3f2e1d0c-9b8a-4765-8432-10fedcba9876'
CONTEXT = 'context'


def source(image_id=IMAGE_1, memory_mb=512):
    image_meta = objects.ImageMeta.from_dict({'id': image_id,
                                              'properties': {}})
    flavor = objects.Flavor(memory_mb=memory_mb, vcpus=1, root_gb=1,
                            ephemeral_gb=0, swap=0, name='m1.substrate',
                            flavorid='42',
                            extra_specs={'substrate:enabled': 'true'})
    return pools.Source(image_meta, flavor)


def target(src=None, count=2):
    src = src or source()
    return pools.Target(src.key, src, count, pools.CONFIG)


class FakeTemplate(object):

    def __init__(self, key, labels=None):
        self.key = key
        self.meta = {'key': key, 'labels': labels or {}}


class FakePool(object):
    """The part of SubstratePool the keeper uses, recording each call."""

    def __init__(self):
        self.held = {}
        self.calls = []
        self.fill_error = None
        self.collect_error = None

    def dock(self, key, labels=None):
        self.held[key] = FakeTemplate(key, labels)

    def get(self, key):
        return self.held.get(key)

    def fill(self, key, count):
        self.calls.append(('fill', key, count))
        if self.fill_error is not None:
            raise self.fill_error
        return count

    def templates(self):
        return list(self.held.values())

    def remove(self, key):
        self.calls.append(('remove', key))
        return self.held.pop(key, None) is not None

    def collect_layers(self, is_alive=None):
        self.calls.append(('collect_layers', is_alive))
        if self.collect_error is not None:
            raise self.collect_error
        return []


class FakeBuilder(object):

    def __init__(self, pool):
        self.pool = pool
        self.calls = []
        self.build_error = None
        self.resolved = {}
        self.resolve_error = None
        self.states = {}

    def resolve(self, context, configured):
        self.calls.append(('resolve', context, configured.image_id))
        if self.resolve_error is not None:
            raise self.resolve_error
        return self.resolved.get(configured.image_id)

    def build(self, context, target):
        self.calls.append(('build', context, target.key))
        if self.build_error is not None:
            raise self.build_error
        self.pool.dock(target.key,
                       {'image_id': target.source.image_meta.id})

    def image_state(self, context, labels):
        return self.states.get(labels['image_id'], keeper.UNKNOWN)

    def layer_user_alive(self, domain_uuid):
        return True

    def builds(self):
        return [c[2] for c in self.calls if c[0] == 'build']


class KeeperTestBase(testtools.TestCase):

    entries = ()

    def setUp(self):
        super().setUp()
        self.pool = FakePool()
        self.builder = FakeBuilder(self.pool)
        self.targets = pools.PoolTargets(list(self.entries),
                                         demand_pools=False)
        self.keeper = keeper.PoolKeeper(self.pool, self.targets,
                                        self.builder, interval=60,
                                        context_factory=lambda: CONTEXT)


class EnsureTest(KeeperTestBase):

    def test_missing_template_is_built_then_filled(self):
        t = target(count=3)
        self.assertTrue(self.keeper.ensure(CONTEXT, t))
        self.assertEqual([('build', CONTEXT, t.key)], self.builder.calls)
        self.assertEqual([('fill', t.key, 3)], self.pool.calls)
        self.assertFalse(self.keeper.build_failed(t.key))

    def test_held_template_is_only_filled(self):
        t = target()
        self.pool.dock(t.key)
        self.assertTrue(self.keeper.ensure(CONTEXT, t))
        self.assertEqual([], self.builder.calls)
        self.assertEqual([('fill', t.key, 2)], self.pool.calls)

    def test_failed_build_is_not_retried(self):
        t = target()
        self.builder.build_error = exception.BuildError('no ACPI')
        self.assertFalse(self.keeper.ensure(CONTEXT, t))
        self.assertTrue(self.keeper.build_failed(t.key))
        self.assertFalse(self.keeper.ensure(CONTEXT, t))
        self.assertEqual([t.key], self.builder.builds())
        self.assertEqual([], self.pool.calls)

    def test_failed_build_retried_on_request(self):
        t = target()
        self.builder.build_error = exception.BuildError('no ACPI')
        self.keeper.ensure(CONTEXT, t)
        self.builder.build_error = None
        self.assertTrue(self.keeper.ensure(CONTEXT, t, retry_failed=True))
        self.assertEqual([t.key, t.key], self.builder.builds())
        self.assertFalse(self.keeper.build_failed(t.key))
        self.assertEqual([('fill', t.key, 2)], self.pool.calls)

    def test_failed_build_retried_after_a_while(self):
        t = target()
        self.builder.build_error = RuntimeError('image unreadable')
        self.keeper.ensure(CONTEXT, t)
        self.useFixture(fixtures.MockPatchObject(keeper, 'BUILD_RETRY_S', 0))
        self.builder.build_error = None
        self.assertTrue(self.keeper.ensure(CONTEXT, t))
        self.assertEqual([t.key, t.key], self.builder.builds())
        self.assertFalse(self.keeper.build_failed(t.key))

    def test_a_failed_key_does_not_hold_back_others(self):
        one, two = target(), target(source(IMAGE_2))
        self.builder.build_error = exception.BuildError('broken')
        self.keeper.ensure(CONTEXT, one)
        self.builder.build_error = None
        self.assertTrue(self.keeper.ensure(CONTEXT, two))
        self.assertTrue(self.keeper.build_failed(one.key))
        self.assertFalse(self.keeper.build_failed(two.key))

    def test_template_gone_before_fill(self):
        t = target()
        self.pool.dock(t.key)
        self.pool.fill_error = exception.NoSubstrate(t.key)
        self.assertFalse(self.keeper.ensure(CONTEXT, t))


class PurgeTest(KeeperTestBase):

    def test_removes_gone_and_changed_images(self):
        states = {'gone': keeper.GONE, 'changed': keeper.CHANGED,
                  'current': keeper.CURRENT, 'unknown': keeper.UNKNOWN}
        for name, state in states.items():
            self.pool.dock(name, {'image_id': 'image-' + name})
            self.builder.states['image-' + name] = state
        self.pool.dock('no-image', {'guest': 'tiny'})
        self.pool.dock('no-labels')
        self.keeper.purge(CONTEXT)
        self.assertEqual({'current', 'unknown', 'no-image', 'no-labels'},
                         set(self.pool.held))
        self.assertEqual({('remove', 'gone'), ('remove', 'changed')},
                         set(self.pool.calls))


class RunOnceTest(KeeperTestBase):

    entries = ('%s:m1.substrate:3' % IMAGE_1, '%s:42:1' % IMAGE_2)

    def test_resolves_builds_fills_and_collects(self):
        src = source(IMAGE_1)
        self.builder.resolved[IMAGE_1] = src
        self.keeper.run_once(CONTEXT)
        self.assertEqual([('resolve', CONTEXT, IMAGE_1),
                          ('resolve', CONTEXT, IMAGE_2),
                          ('build', CONTEXT, src.key)], self.builder.calls)
        self.assertEqual(
            [('fill', src.key, 3),
             ('collect_layers', self.builder.layer_user_alive)],
            self.pool.calls)
        [unresolved] = self.targets.unresolved()
        self.assertEqual(IMAGE_2, unresolved.image_id)

    def test_resolved_pools_are_not_resolved_again(self):
        self.builder.resolved[IMAGE_1] = source(IMAGE_1)
        self.keeper.run_once(CONTEXT)
        del self.builder.calls[:]
        self.keeper.run_once(CONTEXT)
        self.assertEqual([('resolve', CONTEXT, IMAGE_2)],
                         self.builder.calls)

    def test_unresolvable_pools_wait(self):
        self.builder.resolve_error = LookupError('image not found')
        self.keeper.run_once(CONTEXT)
        self.assertEqual(2, len(self.targets.unresolved()))
        self.assertEqual([], self.builder.builds())
        self.assertEqual(['collect_layers'], [c[0] for c in self.pool.calls])

    def test_nothing_done_once_stopping(self):
        self.builder.resolved[IMAGE_1] = source(IMAGE_1)
        self.pool.dock('old', {'image_id': 'deleted-image'})
        self.builder.states['deleted-image'] = keeper.GONE
        self.keeper.stop()
        self.keeper.run_once(CONTEXT)
        self.assertEqual([], self.builder.calls)
        self.assertEqual([], self.pool.calls)

    def test_purges(self):
        self.pool.dock('old', {'image_id': 'deleted-image'})
        self.builder.states['deleted-image'] = keeper.GONE
        self.keeper.run_once(CONTEXT)
        self.assertNotIn('old', self.pool.held)


class ThreadTest(KeeperTestBase):

    def start(self, interval):
        self.keeper.interval = interval
        self.keeper.start()
        self.addCleanup(self.stop)

    def stop(self):
        self.keeper.stop()
        self.keeper.join(5)

    def wait_total(self, rounds):
        # wait_rounds counts from its call, and the first round may be
        # over by then: with a long interval no further one would come.
        with self.keeper._round_done:
            return self.keeper._round_done.wait_for(
                lambda: self.keeper.rounds >= rounds, 5)

    def test_rounds_run_and_stop_joins(self):
        self.start(0.01)
        self.assertTrue(self.keeper.wait_rounds(1, timeout=5))
        self.assertTrue(self.keeper.wait_rounds(2, timeout=5))
        self.stop()
        self.assertFalse(self.keeper._thread.is_alive())

    def test_wake_starts_a_round(self):
        self.start(3600)
        self.assertTrue(self.wait_total(1))
        self.keeper.wake()
        self.assertTrue(self.wait_total(2))

    def test_no_round_without_wake(self):
        self.start(3600)
        self.assertTrue(self.wait_total(1))
        self.assertFalse(self.keeper.wait_rounds(1, timeout=0.2))
        self.assertEqual(1, self.keeper.rounds)

    def test_stop_interrupts_the_wait(self):
        self.start(3600)
        self.assertTrue(self.wait_total(1))
        self.stop()
        self.assertFalse(self.keeper._thread.is_alive())

    def test_failed_round_does_not_end_the_thread(self):
        self.pool.collect_error = OSError('disk gone')
        self.start(0.01)
        self.assertTrue(self.keeper.wait_rounds(3, timeout=5))
        self.assertTrue(self.keeper._thread.is_alive())

    def test_stop_and_join_before_start(self):
        self.keeper.stop()
        self.keeper.join(1)
