"""The driver's side of image caches: when they serve, what they report."""

from unittest import mock

from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools

from nova.compute import task_states
from nova.compute import vm_states
from nova import exception as nova_exception

from nova_substrate import conf as substrate_conf
from nova_substrate.engine import imagecache
from nova_substrate.virt import boot_cache
from nova_substrate.virt import reporting


class BootCachesTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = cfg.ConfigOpts()
        substrate_conf.register_opts(self.conf)
        self.fixture = self.useFixture(config_fixture.Config(self.conf))
        self.conf([], default_config_files=[])
        self.fixture.config(enabled=True, qemu_group='root',
                            remote_url='nbd://store/{image_id}',
                            group='substrate_cache')
        self.image_api = mock.Mock()
        self.caches = boot_cache.BootCaches(self.conf, self.image_api,
                                            mock.Mock())

    def instance(self, **kw):
        fields = dict(uuid='6a4e3d62-7c37-4a5a-9d38-2f6f8e0b7a11',
                      task_state=None, vm_state=vm_states.BUILDING)
        fields.update(kw)
        return mock.Mock(**fields)

    def test_refusals(self):
        ok = self.instance()
        self.assertIsNone(self.caches.refusal(ok, False, '', 'qcow2'))
        self.assertIsNone(self.caches.refusal(ok, False, '', 'default'))
        self.assertEqual('booted from volume',
                         self.caches.refusal(ok, True, '', 'qcow2'))
        self.assertEqual('a rescue disk',
                         self.caches.refusal(ok, False, '.rescue', 'qcow2'))
        self.assertIn('images_type is rbd',
                      self.caches.refusal(ok, False, '', 'rbd'))
        self.assertIn('snapshot', self.caches.refusal(
            self.instance(task_state=task_states.RESIZE_FINISH), False, '',
            'qcow2'))
        self.assertIn('snapshot', self.caches.refusal(
            self.instance(vm_state=vm_states.SHELVED_OFFLOADED), False, '',
            'qcow2'))

    def test_no_remote_means_no_cache(self):
        self.fixture.config(remote_url='', group='substrate_cache')
        self.assertIn('remote_url', self.caches.refusal(
            self.instance(), False, '', 'qcow2'))

    def test_disabled(self):
        self.fixture.config(enabled=False, group='substrate_cache')
        caches = boot_cache.BootCaches(self.conf, self.image_api, mock.Mock())
        self.assertFalse(caches.enabled)
        self.assertEqual({}, caches.warm_images())
        caches.release('anything')

    def test_identity_follows_the_data(self):
        image = {'os_hash_value': 'abc', 'size': 10, 'disk_format': 'qcow2'}
        same = dict(image, name='renamed', properties={'x': 'y'})
        changed = dict(image, os_hash_value='def')
        self.assertEqual(boot_cache.image_identity(image),
                         boot_cache.image_identity(same))
        self.assertNotEqual(boot_cache.image_identity(image),
                            boot_cache.image_identity(changed))

    def test_remote_url(self):
        self.assertEqual('nbd://store/abc', self.caches.remote_url('abc'))

    def test_unreachable_remote_falls_back_quietly(self):
        self.image_api.get.return_value = {'disk_format': 'qcow2'}
        with mock.patch.object(self.caches.manager, 'open',
                               side_effect=imagecache.RemoteUnavailable(
                                   'remote base gone')):
            self.assertIsNone(self.caches.make_root_disk(
                mock.Mock(), self.instance(), 'img', '/nowhere/disk', 0))

    def test_flavor_disk_smaller_than_image_is_refused(self):
        self.image_api.get.return_value = {'disk_format': 'qcow2'}
        cache = mock.Mock()
        cache.state.return_value = {'virtual_size': 2 * 2 ** 30}
        with mock.patch.object(self.caches.manager, 'open',
                               return_value=cache), \
                mock.patch.object(self.caches.manager, 'acquire'), \
                mock.patch.object(self.caches.manager, 'release') as release:
            self.assertRaises(nova_exception.FlavorDiskSmallerThanImage,
                              self.caches.make_root_disk, mock.Mock(),
                              self.instance(), 'img', '/nowhere/disk',
                              2 ** 30)
        release.assert_called_once_with(self.instance().uuid)

    def test_gone_image_is_purged(self):
        self.image_api.get.side_effect = nova_exception.ImageNotFound(
            image_id='img')
        with mock.patch.object(self.caches.manager, 'purge',
                               return_value=[]) as purge:
            self.caches.check_image(mock.Mock(), 'img')
        purge.assert_called_once_with('img')

    def test_changed_image_keeps_only_its_current_cache(self):
        image = {'os_hash_value': 'new', 'size': 1, 'disk_format': 'raw',
                 'status': 'active'}
        self.image_api.get.return_value = image
        with mock.patch.object(self.caches.manager, 'purge',
                               return_value=[]) as purge:
            self.caches.check_image(mock.Mock(), 'img')
        purge.assert_called_once_with(
            'img', keep_identity=boot_cache.image_identity(image))


class CacheStatsTest(testtools.TestCase):

    def test_only_warm_caches_are_reported(self):
        stats = reporting.cache_stats({'a': 5 * 2 ** 20, 'b': 0})
        self.assertEqual({'substrate_cache.a': str(5 * 2 ** 20)}, stats)
        self.assertTrue(reporting.cache_is_warm(stats, 'a'))
        self.assertFalse(reporting.cache_is_warm(stats, 'b'))
