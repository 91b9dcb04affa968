"""Stats and traits: what the scheduler learns of a host's pools."""

from nova.compute import provider_tree
import testtools

from nova_substrate.virt import reporting

NODE = 'node-1'
NODE_UUID = '5d1a8f3e-2b4c-4e6f-8a9b-0c1d2e3f4a5b'
KEY_A = 'ab' * 16
KEY_B = 'cd' * 16


class StatsTest(testtools.TestCase):

    def test_values_are_strings(self):
        stats = reporting.pool_stats({KEY_A: 2, KEY_B: 0}, 1536.0, 4096)
        self.assertEqual({'substrate_host': '1',
                          'substrate_memory_mb': '1536',
                          'substrate_budget_mb': '4096',
                          'substrate.' + KEY_A: '2',
                          'substrate.' + KEY_B: '0'}, stats)
        for value in stats.values():
            self.assertIsInstance(value, str)

    def test_empty_pool(self):
        self.assertEqual({'substrate_host': '1', 'substrate_memory_mb': '0',
                          'substrate_budget_mb': '0'},
                         reporting.pool_stats({}, 0, 0))

    def test_round_trip(self):
        ready = {KEY_A: 3, KEY_B: 0}
        self.assertEqual(ready, reporting.ready_from_stats(
            reporting.pool_stats(ready, 100, 200)))

    def test_ignores_junk(self):
        stats = {'substrate.' + KEY_A: '2', 'substrate.' + KEY_B: 'many',
                 'substrate.bad': None, 'substrate_host': '1',
                 'num_instances': '4', 'io_workload': '0'}
        self.assertEqual({KEY_A: 2}, reporting.ready_from_stats(stats))

    def test_no_stats(self):
        self.assertEqual({}, reporting.ready_from_stats(None))
        self.assertEqual({}, reporting.ready_from_stats({}))


class TraitsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tree = provider_tree.ProviderTree()
        self.tree.new_root(NODE, NODE_UUID)
        self.tree.add_traits(NODE, 'COMPUTE_NET_VIF_MODEL_VIRTIO',
                             'CUSTOM_GOLD')

    def traits(self):
        return set(self.tree.data(NODE).traits)

    def test_key_trait(self):
        self.assertEqual('CUSTOM_SUBSTRATE_' + KEY_A.upper(),
                         reporting.key_trait(KEY_A))

    def test_wanted_traits(self):
        self.assertEqual({'CUSTOM_SUBSTRATE_HOST',
                          reporting.key_trait(KEY_A)},
                         reporting.wanted_traits({KEY_A: 1, KEY_B: 0}))

    def test_adds_substrate_traits(self):
        reporting.update_traits(self.tree, NODE, {KEY_A: 2, KEY_B: 0})
        self.assertEqual({'COMPUTE_NET_VIF_MODEL_VIRTIO', 'CUSTOM_GOLD',
                          'CUSTOM_SUBSTRATE_HOST',
                          reporting.key_trait(KEY_A)}, self.traits())

    def test_removes_stale_substrate_traits(self):
        reporting.update_traits(self.tree, NODE, {KEY_A: 2, KEY_B: 1})
        self.assertIn(reporting.key_trait(KEY_B), self.traits())
        reporting.update_traits(self.tree, NODE, {KEY_A: 0, KEY_B: 1})
        self.assertEqual({'COMPUTE_NET_VIF_MODEL_VIRTIO', 'CUSTOM_GOLD',
                          'CUSTOM_SUBSTRATE_HOST',
                          reporting.key_trait(KEY_B)}, self.traits())

    def test_empty_pool_keeps_host_trait(self):
        self.tree.add_traits(NODE, reporting.key_trait(KEY_A))
        reporting.update_traits(self.tree, NODE, {})
        self.assertEqual({'COMPUTE_NET_VIF_MODEL_VIRTIO', 'CUSTOM_GOLD',
                          'CUSTOM_SUBSTRATE_HOST'}, self.traits())
