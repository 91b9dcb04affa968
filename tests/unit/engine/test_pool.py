"""The substrate pool: claims, budget, eviction, recovery, layers."""

import concurrent.futures
import multiprocessing
import os
import stat

import fixtures
import testtools

from nova_substrate.engine import exception
from nova_substrate.engine import pool as pool_mod
from nova_substrate.engine import saveimage
from tests.unit.engine import fakes

STREAM_BYTES = 256 * 1024 + 8


def _claim_in_child(path, layer_path, key, queue):
    pool = pool_mod.SubstratePool(path, layer_path, 0)
    try:
        queue.put(pool.claim(key).path)
    except exception.NoSubstrate:
        queue.put(None)


class PoolTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.path = os.path.join(root, 'pool')
        self.layers = os.path.join(root, 'layers')
        self.pool = pool_mod.SubstratePool(self.path, self.layers, 0)

    def dock(self, key):
        return fakes.dock(self.pool, key)


class DockTest(PoolTestCase):

    def test_directories_are_root_only(self):
        self.assertEqual(0o700, stat.S_IMODE(os.stat(self.path).st_mode))
        # QEMU must reach layers by path, but nobody may list them
        self.assertEqual(0o711, stat.S_IMODE(os.stat(self.layers).st_mode))

    def test_template_files_are_root_only(self):
        t = self.dock('aa' * 16)
        self.assertEqual(0o600, stat.S_IMODE(os.stat(t.save_path).st_mode))
        self.pool.fill(t.key, 1)
        claim = self.pool.claim(t.key)
        self.assertEqual(0o600, stat.S_IMODE(os.stat(claim.path).st_mode))

    def test_refuses_bad_key_and_incomplete_meta(self):
        self.assertRaises(ValueError, self.dock, '../etc')
        tmp = self.pool.tmp_path()
        fakes.make_save_image(tmp)
        self.assertRaises(ValueError, self.pool.add_template, 'ab' * 8, tmp,
                          {'key': 'ab' * 8})

    def test_fill_copies_template(self):
        t = self.dock('ab' * 16)
        self.assertEqual(3, self.pool.fill(t.key, 3))
        self.assertEqual(3, self.pool.ready_count(t.key))
        self.assertEqual(0, self.pool.fill(t.key, 3))
        claim = self.pool.claim(t.key)
        with open(claim.path, 'rb') as a, open(t.save_path, 'rb') as b:
            self.assertEqual(b.read(), a.read())
        self.assertEqual(2, self.pool.ready_count(t.key))

    def test_claim_without_substrates(self):
        self.assertRaises(exception.NoSubstrate, self.pool.claim, 'cd' * 16)
        t = self.dock('cd' * 16)
        self.assertRaises(exception.NoSubstrate, self.pool.claim, t.key)
        claim = self.pool.claim(t.key, copy_if_empty=True)
        self.assertTrue(os.path.exists(claim.path))
        claim.discard()
        self.assertFalse(os.path.exists(claim.path))

    def test_describe(self):
        t = self.dock('ef' * 16)
        self.pool.fill(t.key, 2)
        [row] = self.pool.describe()
        self.assertEqual(t.key, row['key'])
        self.assertEqual(2, row['ready'])
        self.assertEqual(512, row['memory_mb'])
        self.assertGreater(row['bytes'], 3 * STREAM_BYTES)


class ClaimConcurrencyTest(PoolTestCase):

    def test_threads_never_share_a_substrate(self):
        t = self.dock('12' * 16)
        self.pool.fill(t.key, 5)
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            results = list(ex.map(self._try_claim, [t.key] * 16))
        taken = [r for r in results if r]
        self.assertEqual(5, len(taken))
        self.assertEqual(5, len(set(taken)))

    def _try_claim(self, key):
        try:
            return self.pool.claim(key).path
        except exception.NoSubstrate:
            return None

    def test_processes_never_share_a_substrate(self):
        t = self.dock('34' * 16)
        self.pool.fill(t.key, 3)
        ctx = multiprocessing.get_context('fork')
        queue = ctx.Queue()
        procs = [ctx.Process(target=_claim_in_child,
                             args=(self.path, self.layers, t.key, queue))
                 for _ in range(8)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=30) for _ in procs]
        for p in procs:
            p.join()
        taken = [r for r in results if r]
        self.assertEqual(3, len(taken))
        self.assertEqual(3, len(set(taken)))


class BudgetTest(PoolTestCase):

    def setUp(self):
        super().setUp()
        # four memory states fit, not five
        self.pool.budget_bytes = 4 * STREAM_BYTES + 300 * 1024

    def test_fill_stops_at_the_budget(self):
        t = self.dock('aa' * 16)
        self.assertEqual(3, self.pool.fill(t.key, 10))
        self.assertLessEqual(self.pool.usage_bytes(), self.pool.budget_bytes)

    def test_least_recently_used_key_is_evicted(self):
        old = self.dock('aa' * 16)
        newer = self.dock('bb' * 16)
        # use the older one, so the other becomes least recently used
        os.utime(os.path.join(newer.dir, pool_mod.META_FILE), (1, 1))
        old.touch()
        self.assertEqual(3, self.pool.fill(old.key, 3))
        self.assertIsNone(self.pool.get(newer.key))
        self.assertIsNotNone(self.pool.get(old.key))
        self.assertEqual(0, self.pool.ready_count(newer.key))

    def test_full_budget_refuses_a_template(self):
        self.pool.budget_bytes = STREAM_BYTES // 2
        self.assertRaises(exception.PoolFull, self.dock, 'cc' * 16)
        self.assertEqual([], self.pool.templates())

    def test_explicit_evict(self):
        self.pool.budget_bytes = 0
        a = self.dock('aa' * 16)
        b = self.dock('bb' * 16)
        os.utime(os.path.join(a.dir, pool_mod.META_FILE), (1, 1))
        freed = self.pool.evict(STREAM_BYTES)
        self.assertGreaterEqual(freed, STREAM_BYTES)
        self.assertIsNone(self.pool.get(a.key))
        self.assertIsNotNone(self.pool.get(b.key))


class RecoveryTest(PoolTestCase):

    def reopen(self):
        return pool_mod.SubstratePool(self.path, self.layers, 0)

    def test_adopts_valid_pool(self):
        t = self.dock('aa' * 16)
        self.pool.fill(t.key, 2)
        report = self.reopen().recover()
        self.assertEqual([t.key], report['adopted'])
        self.assertEqual([], report['removed'])
        self.assertEqual(2, self.pool.ready_count(t.key))

    def test_removes_leftovers_of_interrupted_work(self):
        t = self.dock('aa' * 16)
        self.pool.fill(t.key, 1)
        self.pool.claim(t.key)
        open(self.pool.tmp_path('.save'), 'w').close()
        report = self.reopen().recover()
        self.assertEqual(2, len(report['removed']))
        self.assertEqual([], os.listdir(os.path.join(self.path, 'claimed')))
        self.assertEqual([], os.listdir(os.path.join(self.path, 'tmp')))

    def test_removes_truncated_copy(self):
        t = self.dock('aa' * 16)
        self.pool.fill(t.key, 2)
        victim = os.path.join(self.path, 'ready', t.key,
                              os.listdir(os.path.join(self.path, 'ready',
                                                      t.key))[0])
        os.truncate(victim, 1000)
        report = self.reopen().recover()
        self.assertEqual([(victim, report['removed'][0][1])],
                         report['removed'])
        self.assertIn('truncated', report['removed'][0][1])
        self.assertEqual(1, self.pool.ready_count(t.key))

    def test_removes_template_with_damaged_memory(self):
        t = self.dock('aa' * 16)
        header = saveimage.read_header(t.save_path)
        with open(t.save_path, 'r+b') as f:
            f.seek(header.stream_offset + 5000)
            f.write(b'\xff' * 16)
        report = self.reopen().recover()
        self.assertEqual([], report['adopted'])
        self.assertIn('checksum', report['removed'][0][1])
        self.assertIsNone(self.pool.get(t.key))

    def test_removes_template_without_layer(self):
        t = self.dock('aa' * 16)
        os.unlink(t.layer_path)
        report = self.reopen().recover()
        self.assertIn('layer', report['removed'][0][1])
        self.assertIsNone(self.pool.get(t.key))

    def test_removes_template_with_bad_meta(self):
        t = self.dock('aa' * 16)
        with open(os.path.join(t.dir, pool_mod.META_FILE), 'w') as f:
            f.write('{not json')
        report = self.reopen().recover()
        self.assertIn('meta.json', report['removed'][0][1])
        self.assertEqual([], os.listdir(os.path.join(self.path,
                                                     'templates')))


class LayerTest(PoolTestCase):

    def test_layer_outlives_template_while_used(self):
        t = self.dock('aa' * 16)
        layer_id = t.meta['layer_id']
        self.pool.add_layer_user(layer_id, 'clone-1')
        self.pool.remove(t.key)
        self.assertEqual([], self.pool.collect_layers(lambda u: True))
        self.assertTrue(os.path.exists(t.layer_path))
        self.assertEqual([layer_id],
                         self.pool.collect_layers(lambda u: False))
        self.assertFalse(os.path.exists(t.layer_path))

    def test_layer_of_live_template_is_kept(self):
        t = self.dock('aa' * 16)
        self.assertEqual([], self.pool.collect_layers(lambda u: False))
        self.assertTrue(os.path.exists(t.layer_path))
