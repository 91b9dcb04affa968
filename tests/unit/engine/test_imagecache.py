"""Image cache pieces that need no QEMU: records, leases, eviction rules."""

import json
import os
import shutil
import tempfile
from unittest import mock

import fixtures
import testtools

from nova_substrate.engine import cacheserver
from nova_substrate.engine import imagecache
from nova_substrate.engine import workingset

MiB = 2 ** 20


class WorkingSetTest(testtools.TestCase):

    def test_truncated_keeps_read_order_up_to_the_limit(self):
        ws = workingset.WorkingSet('x', [(8 * MiB, MiB), (0, 2 * MiB),
                                         (4 * MiB, MiB)])
        cut = ws.truncated(2 * MiB + MiB // 2)
        self.assertEqual([(8 * MiB, MiB), (0, MiB + MiB // 2)], cut.extents)
        self.assertEqual(2 * MiB + MiB // 2, cut.bytes)

    def test_save_and_load(self):
        path = os.path.join(self.useFixture(
            fixtures.TempDir()).path, 'ws.json')
        workingset.WorkingSet('img@1', [(0, 4096), (65536, 8192)]).save(path)
        self.assertEqual(0o600, os.stat(path).st_mode & 0o777)
        loaded = workingset.WorkingSet.load(path)
        self.assertEqual([(0, 4096), (65536, 8192)], loaded.extents)
        self.assertEqual('read -q 0 4096\nread -q 65536 8192\n',
                         loaded.qemu_io_script())

    def test_missing_record_is_none_and_junk_is_an_error(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        self.assertIsNone(workingset.WorkingSet.load(tmp + '/none.json'))
        with open(tmp + '/bad.json', 'w') as f:
            json.dump({'version': 99}, f)
        self.assertRaises(imagecache.exception.SubstrateError,
                          workingset.WorkingSet.load, tmp + '/bad.json')

    @mock.patch('subprocess.run')
    def test_from_cache_file_orders_by_host_offset(self, run):
        run.return_value.stdout = json.dumps([
            {'start': 0, 'length': 65536, 'data': True, 'offset': 393216},
            {'start': 65536, 'length': 983040, 'data': False},
            {'start': 1048576, 'length': 65536, 'data': True,
             'offset': 327680}])
        ws = workingset.WorkingSet.from_cache_file('x', '/c.qcow2')
        self.assertEqual([(1048576, 65536), (0, 65536)], ws.extents)


class RemoteTest(testtools.TestCase):

    def test_nbd_tcp(self):
        spec = cacheserver.remote_blockdev('nbd://store:10810/abc', 'raw')
        self.assertEqual({'type': 'inet', 'host': 'store', 'port': '10810'},
                         spec['server'])
        self.assertEqual('abc', spec['export'])
        self.assertEqual(cacheserver.REMOTE_NODE, spec['node-name'])

    def test_nbd_unix_qcow2(self):
        spec = cacheserver.remote_blockdev(
            'nbd+unix:///abc?socket=/run/s.sock', 'qcow2')
        self.assertEqual('qcow2', spec['driver'])
        self.assertEqual({'type': 'unix', 'path': '/run/s.sock'},
                         spec['file']['server'])

    def test_http(self):
        spec = cacheserver.remote_blockdev('https://store/i/abc', 'raw')
        self.assertEqual({'driver': 'https', 'url': 'https://store/i/abc',
                          'read-only': True,
                          'node-name': cacheserver.REMOTE_NODE}, spec)


class ManagerRulesTest(testtools.TestCase):
    """Leases, eviction, purge and budget on cache directories.

    The storage daemon is not started: these rules are about files.
    """

    def setUp(self):
        super().setUp()
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)
        self.manager = imagecache.CacheManager(
            self.root + '/caches', self.root + '/records', 16 * MiB,
            budget_bytes=20 * MiB, socket_group=os.getgid())
        self.useFixture(fixtures.MockPatch(
            'nova_substrate.engine.cacheserver.CacheServer.stop'))

    def make(self, image_id, identity='v1', size=8 * MiB, used_at=None):
        cache = imagecache.ImageCache(self.manager.root,
                                      imagecache.cache_name(image_id,
                                                            identity))
        os.makedirs(cache.leases)
        with open(cache.cache_file, 'wb') as f:
            f.write(b'\1' * size)
        cache._update_state(image_id=image_id, identity=identity,
                            quota_bytes=16 * MiB, sealed=True)
        if used_at is not None:
            os.utime(cache.leases, (used_at, used_at))
        return cache

    def test_unsupported_format_refused_before_anything_is_made(self):
        self.assertRaises(imagecache.UnsupportedImage, self.manager.open,
                          'img', 'v1', 'nbd://s/img', 'vmdk')
        self.assertFalse(os.path.exists(self.manager.root))

    def test_evict_refused_while_leased(self):
        cache = self.make('a')
        self.manager.acquire(cache, 'instance-1')
        self.assertRaises(imagecache.CacheInUse, self.manager.evict,
                          cache.name)
        self.manager.release('instance-1')
        self.assertTrue(self.manager.evict(cache.name))
        self.assertFalse(os.path.exists(cache.directory))

    def test_purge_marks_used_caches_stale_and_removes_them_when_unused(self):
        used = self.make('a', 'v1')
        unused = self.make('a', 'v0')
        self.manager.acquire(used, 'instance-1')
        self.assertEqual([unused.name], self.manager.purge('a'))
        self.assertTrue(used.stale)
        self.assertRaises(imagecache.UnsupportedImage, self.manager.acquire,
                          used, 'instance-2')
        self.manager.release('instance-1')
        self.assertFalse(os.path.exists(used.directory))

    def test_purge_keeps_the_current_identity(self):
        old = self.make('a', 'v1')
        new = self.make('a', 'v2')
        self.assertEqual([old.name], self.manager.purge('a', 'v2'))
        self.assertTrue(os.path.exists(new.directory))

    def test_age_and_budget_evict_unused_least_recent_first(self):
        old = self.make('a', used_at=1000)
        newer = self.make('b', used_at=2000)
        leased = self.make('c', used_at=500)
        self.manager.acquire(leased, 'instance-1')
        os.utime(leased.leases, (500, 500))
        # 24 MiB held, budget 20: the least recently used unused goes.
        self.assertEqual([old.name], self.manager.age(0))
        self.assertTrue(os.path.exists(newer.directory))
        self.assertTrue(os.path.exists(leased.directory))

    def test_age_drops_leases_of_vanished_instances(self):
        cache = self.make('a')
        self.manager.acquire(cache, 'gone')
        os.utime(cache.leases, (1000, 1000))
        self.manager.budget_bytes = 0
        self.assertEqual([cache.name], self.manager.age(
            60, user_exists=lambda user: False))

    def test_warm_images_reports_the_largest_cache_per_image(self):
        self.make('a', 'v1', size=2 * MiB)
        self.make('a', 'v2', size=3 * MiB)
        warm = self.manager.warm_images()
        self.assertGreaterEqual(warm['a'], 3 * MiB)


class FromOptionsTest(testtools.TestCase):

    def test_unknown_qemu_group_names_the_option(self):
        options = mock.Mock(qemu_group='no-such-group-here')
        e = self.assertRaises(imagecache.exception.SubstrateError,
                              imagecache.CacheManager.from_options, options)
        self.assertIn('[substrate_cache] qemu_group', str(e))

    def test_sizes_in_bytes(self):
        options = mock.Mock(qemu_group='root', cache_path='/c',
                            record_path='/r', quota_mb=2, budget_mb=3)
        manager = imagecache.CacheManager.from_options(options)
        self.assertEqual((2 * MiB, 3 * MiB, 0),
                         (manager.quota_bytes, manager.budget_bytes,
                          manager.socket_group))
