"""The cache of built guests: reuse, atomic builds, cleanup, locking."""

import json
import os
import stat
import threading

import fixtures
import testtools

from nova_substrate.guests import base
from nova_substrate.guests import cache
from tests.unit.guests import fakes

# Only a safety net against a hung test: no assertion depends on it.
WAIT_S = 30


class GuestCacheTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())
        self.useFixture(fixtures.MonkeyPatch(
            'nova_substrate.guests.base.qcow2_virtual_size',
            fakes.fake_qcow2_virtual_size))
        self.tmp = self.useFixture(fixtures.TempDir()).path
        # QEMU runs as another user and must reach the cache.
        os.chmod(self.tmp, 0o755)
        self.root = os.path.join(self.tmp, 'cache')
        self.progress = []

    def get(self, recipe):
        return cache.GuestCache(self.root).get(recipe, self.progress.append)

    def guest_dir(self, recipe):
        return os.path.join(self.root, 'fake-' + recipe.digest()[:12])

    def test_builds_a_missing_guest(self):
        recipe = fakes.FakeRecipe()
        image = self.get(recipe)
        self.assertEqual(1, recipe.builds)
        path = self.guest_dir(recipe)
        self.assertEqual(base.GuestImage(
            name='fake', kernel=os.path.join(path, 'vmlinuz'),
            initrd=os.path.join(path, 'initrd.img'),
            disk=os.path.join(path, 'disk.qcow2'),
            cmdline='console=ttyS0 fake', digest=recipe.digest(),
            disk_bytes=fakes.DISK_BYTES, disk_file_bytes=len(b'disk 1')),
            image)
        with open(image.disk, 'rb') as f:
            self.assertEqual(b'disk 1', f.read())
        # the build's work and scratch directories are gone
        self.assertEqual(['.fake.lock', os.path.basename(path)],
                         sorted(os.listdir(self.root)))
        self.assertEqual(['disk.qcow2', 'guest.json', 'initrd.img',
                          'vmlinuz'], sorted(os.listdir(path)))
        with open(os.path.join(path, 'guest.json')) as f:
            manifest = json.load(f)
        self.assertEqual(('fake', recipe.digest(), 'console=ttyS0 fake'),
                         (manifest['name'], manifest['digest'],
                          manifest['cmdline']))
        self.assertIn('building the fake guest in %s' % path, self.progress)
        self.assertIn('fake guest: writing', self.progress)

    def test_builds_a_guest_that_boots_from_its_disk(self):
        recipe = fakes.FakeDiskRecipe()
        image = self.get(recipe)
        path = os.path.join(self.root, 'fakedisk-' + recipe.digest()[:12])
        self.assertEqual(base.GuestImage(
            name='fakedisk', kernel=None, initrd=None,
            disk=os.path.join(path, 'disk.qcow2'), cmdline=None,
            digest=recipe.digest(), disk_bytes=fakes.DISK_BYTES,
            disk_file_bytes=len(b'bootable disk 1')), image)
        self.assertTrue(image.boots_from_disk)
        self.assertEqual(['disk.qcow2', 'guest.json'],
                         sorted(os.listdir(path)))
        with open(os.path.join(path, 'guest.json')) as f:
            manifest = json.load(f)
        self.assertEqual((None, None, None, 'disk.qcow2'),
                         (manifest['kernel'], manifest['initrd'],
                          manifest['cmdline'], manifest['disk']))
        # found again, not rebuilt
        again = fakes.FakeDiskRecipe()
        self.assertEqual(image, self.get(again))
        self.assertEqual(0, again.builds)
        # and rebuilt once its disk is gone
        os.unlink(image.disk)
        self.assertEqual(image, self.get(again))
        self.assertEqual(1, again.builds)

    def test_loads_a_manifest_written_before_disk_boot(self):
        # as the tiny and debian guests in existing caches have them
        path = os.path.join(self.root, 'debian-0123456789ab')
        for name in ('vmlinuz', 'initrd.img', 'disk.qcow2'):
            fakes.write_file(os.path.join(path, name), name.encode())
        manifest = {
            'build_seconds': 80.2, 'built_at': '2026-11-30T10:00:00Z',
            'cmdline': 'root=/dev/vda rw console=ttyS0',
            'digest': '0123456789ab' + '0' * 52,
            'disk': 'disk.qcow2', 'disk_bytes': fakes.DISK_BYTES,
            'initrd': 'initrd.img', 'kernel': 'vmlinuz', 'name': 'debian'}
        fakes.write_file(os.path.join(path, 'guest.json'),
                         json.dumps(manifest).encode())
        image = cache.load_guest(path)
        self.assertEqual(base.GuestImage(
            name='debian', kernel=os.path.join(path, 'vmlinuz'),
            initrd=os.path.join(path, 'initrd.img'),
            disk=os.path.join(path, 'disk.qcow2'),
            cmdline='root=/dev/vda rw console=ttyS0',
            digest=manifest['digest'], disk_bytes=fakes.DISK_BYTES,
            disk_file_bytes=len(b'disk.qcow2')), image)
        self.assertFalse(image.boots_from_disk)
        os.unlink(os.path.join(path, 'initrd.img'))
        self.assertIsNone(cache.load_guest(path))

    def test_guest_is_readable_by_other_users_whatever_the_umask(self):
        old_umask = os.umask(0o077)
        self.addCleanup(os.umask, old_umask)
        self.root = os.path.join(self.tmp, 'var', 'cache', 'guests')
        image = self.get(fakes.FakeRecipe())
        for directory in (os.path.join(self.tmp, 'var'), self.root,
                          os.path.dirname(image.disk)):
            self.assertEqual(0o755, stat.S_IMODE(os.stat(directory).st_mode),
                             directory)
        for name in os.listdir(os.path.dirname(image.disk)):
            path = os.path.join(os.path.dirname(image.disk), name)
            self.assertEqual(0o644, stat.S_IMODE(os.stat(path).st_mode),
                             path)
        self.assertNotIn('not searchable', self.log.output)

    def test_warns_when_a_parent_hides_the_cache_from_qemu(self):
        os.chmod(self.tmp, 0o700)
        self.get(fakes.FakeRecipe())
        self.assertIn('%s is not searchable by other users' % self.tmp,
                      self.log.output)

    def test_cached_guest_is_reused_without_building(self):
        first = self.get(fakes.FakeRecipe())
        recipe = fakes.FakeRecipe()
        self.progress = []
        self.assertEqual(first, self.get(recipe))
        self.assertEqual(0, recipe.builds)
        self.assertEqual([], self.progress)

    def test_incomplete_guest_is_rebuilt(self):
        first = self.get(fakes.FakeRecipe())
        os.unlink(first.disk)
        recipe = fakes.FakeRecipe()
        self.assertEqual(first, self.get(recipe))
        self.assertEqual(1, recipe.builds)
        self.assertTrue(os.path.isfile(first.disk))

    def test_leftovers_of_an_interrupted_build_are_removed(self):
        recipe = fakes.FakeRecipe()
        os.makedirs(self.root)
        # killed while building, and a half-made guest without manifest
        fakes.write_file(os.path.join(self.root, '.build-fake-x1y2z3',
                                      'guest', 'vmlinuz'), b'partial')
        fakes.write_file(os.path.join(self.guest_dir(recipe), 'vmlinuz'),
                         b'partial')
        # another guest's build, perhaps running now
        fakes.write_file(os.path.join(self.root, '.build-debian-a1b2c3',
                                      'guest', 'vmlinuz'), b'partial')
        image = self.get(recipe)
        self.assertEqual(1, recipe.builds)
        self.assertEqual(['.build-debian-a1b2c3', '.fake.lock',
                          os.path.basename(self.guest_dir(recipe))],
                         sorted(os.listdir(self.root)))
        with open(image.kernel, 'rb') as f:
            self.assertEqual(b'kernel', f.read())

    def test_failed_build_leaves_nothing_behind(self):
        def fail():
            raise base.GuestBuildError('mkfs.ext4 failed')
        recipe = fakes.FakeRecipe(on_build=fail)
        e = self.assertRaises(base.GuestBuildError, self.get, recipe)
        self.assertEqual('mkfs.ext4 failed', str(e))
        self.assertEqual(['.fake.lock'], os.listdir(self.root))
        # and the next attempt builds from scratch
        self.assertEqual(recipe.digest(), self.get(fakes.FakeRecipe()).digest)

    def test_new_build_removes_older_versions(self):
        old = self.get(fakes.FakeRecipe(b'1'))
        other_guest = os.path.join(self.root, 'debian-0123456789ab')
        fakes.write_file(os.path.join(other_guest, 'guest.json'), b'{}')
        new = self.get(fakes.FakeRecipe(b'2'))
        self.assertNotEqual(old.digest, new.digest)
        self.assertFalse(os.path.exists(os.path.dirname(old.disk)))
        self.assertTrue(os.path.isfile(new.disk))
        self.assertTrue(os.path.isdir(other_guest))
        self.assertEqual(
            ['.fake.lock', 'debian-0123456789ab',
             os.path.basename(os.path.dirname(new.disk))],
            sorted(os.listdir(self.root)))

    def test_lock_serializes_two_builders(self):
        building = threading.Event()
        release = threading.Event()
        waiting = threading.Event()
        self.addCleanup(release.set)
        results = {}

        def block():
            building.set()
            release.wait(WAIT_S)

        def on_progress(message):
            if message == 'waiting for another build of the fake guest':
                waiting.set()

        def builder(key, recipe, progress):
            try:
                results[key] = cache.GuestCache(self.root).get(recipe,
                                                               progress)
            except Exception as e:
                results[key] = e

        first = fakes.FakeRecipe(on_build=block)
        second = fakes.FakeRecipe()
        # flock locks belong to an open file description: two threads,
        # each opening the lock file, contend as two processes would.
        threads = [
            threading.Thread(target=builder, daemon=True,
                             args=('first', first, lambda message: None)),
            threading.Thread(target=builder, daemon=True,
                             args=('second', second, on_progress))]
        threads[0].start()
        self.assertTrue(building.wait(WAIT_S))
        threads[1].start()
        self.assertTrue(waiting.wait(WAIT_S))
        # the second builder waits on the lock, it does not build
        self.assertEqual(0, second.builds)
        self.assertNotIn('second', results)
        release.set()
        for thread in threads:
            thread.join(WAIT_S)
        self.assertIsInstance(results['first'], base.GuestImage)
        self.assertEqual(results['first'], results['second'])
        self.assertEqual((1, 0), (first.builds, second.builds))

    def test_default_cache_dir(self):
        self.useFixture(fixtures.EnvironmentVariable(
            'NOVA_SUBSTRATE_GUEST_CACHE'))
        self.assertEqual('/var/cache/nova-substrate/guests',
                         cache.default_cache_dir())
        self.useFixture(fixtures.EnvironmentVariable(
            'NOVA_SUBSTRATE_GUEST_CACHE', self.root))
        self.assertEqual(self.root, cache.default_cache_dir())
