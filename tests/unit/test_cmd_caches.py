"""nova-substrate cache list / evict, on cache directories."""

import argparse
import contextlib
import io
import json
import os

import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools

from nova_substrate.cmd import caches
from nova_substrate.cmd import main as cli
from nova_substrate import conf as substrate_conf
from nova_substrate.engine import imagecache

MiB = 2 ** 20


class CacheCommandTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.conf = cfg.ConfigOpts()
        substrate_conf.register_opts(self.conf)
        fixture = self.useFixture(config_fixture.Config(self.conf))
        self.conf([], default_config_files=[])
        fixture.config(cache_path=self.tmp + '/caches',
                       record_path=self.tmp + '/records',
                       qemu_group='root', group='substrate_cache')
        self.useFixture(fixtures.MockPatch(
            'nova_substrate.engine.cacheserver.CacheServer.stop'))
        self.manager = imagecache.CacheManager.from_options(
            self.conf.substrate_cache)

    def make(self, image_id):
        cache = imagecache.ImageCache(self.manager.root,
                                      imagecache.cache_name(image_id, 'v1'))
        os.makedirs(cache.leases)
        with open(cache.cache_file, 'wb') as f:
            f.write(b'\1' * MiB)
        cache._update_state(image_id=image_id, quota_bytes=16 * MiB,
                            sealed=True)
        return cache

    def run_cli(self, *argv):
        parser = argparse.ArgumentParser()
        top = parser.add_subparsers(dest='group', required=True)
        caches.add_parser(top)
        args = parser.parse_args(list(argv))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = caches.run(args, self.conf, cli._print_table)
        return status, out.getvalue()

    def test_list(self):
        cache = self.make('img-a')
        self.manager.acquire(cache, 'instance-1')
        status, out = self.run_cli('cache', 'list', '--json')
        self.assertEqual(0, status)
        [row] = json.loads(out)
        self.assertEqual('img-a', row['image_id'])
        self.assertEqual(['instance-1'], row['users'])
        self.assertTrue(row['sealed'])
        status, out = self.run_cli('cache', 'list')
        self.assertIn(cache.name, out)
        self.assertIn('quota_MiB', out)

    def test_evict_refuses_a_cache_in_use(self):
        cache = self.make('img-a')
        self.manager.acquire(cache, 'instance-1')
        status, out = self.run_cli('cache', 'evict', 'img-a')
        self.assertEqual(1, status)
        self.assertIn('Refused', out)
        self.assertIn('instance-1', out)
        self.assertTrue(os.path.isdir(cache.directory))
        self.manager.release('instance-1')
        status, out = self.run_cli('cache', 'evict', cache.name)
        self.assertEqual(0, status)
        self.assertFalse(os.path.isdir(cache.directory))

    def test_unknown_cache(self):
        status, out = self.run_cli('cache', 'evict', 'nothing')
        self.assertEqual(1, status)
        self.assertIn('No image cache nothing', out)
