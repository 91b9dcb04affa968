"""The guest recipes: what goes into a digest, what a build needs."""

import os

import fixtures
import testtools

from nova_substrate import guests
from nova_substrate.guests import base
from nova_substrate.guests import cloud
from nova_substrate.guests import debian
from nova_substrate.guests import tiny
from tests.unit.guests import fakes

CLOUD_KERNEL_PACKAGE = 'linux-image-cloud-amd64'


class RecipeTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(fakes.FakeHost())


class DigestTestMixin(object):
    """Digest properties every recipe has; RECIPE names the class."""

    RECIPE = None

    def digest(self):
        return self.RECIPE().digest()

    def edit(self, path, content):
        with open(path, 'wb') as f:
            f.write(content)

    def read(self, path):
        with open(path, 'rb') as f:
            return f.read()

    def test_is_stable(self):
        first = self.digest()
        self.assertRegex(first, '^[0-9a-f]{64}$')
        self.assertEqual(first, self.digest())
        # the content counts, not when it was written
        hook = self.host.guest_file(base.HOOK_FILE)
        os.utime(hook, (1, 1))
        self.edit(hook, self.read(hook))
        self.assertEqual(first, self.digest())

    def test_hook_is_read_from_nova_substrate_guest_src(self):
        self.assertEqual(self.host.guest_file(base.HOOK_FILE),
                         base.hook_path())
        self.assertEqual(self.host.guest_file(base.GUESTUTIL_SOURCE),
                         base.guestutil_source_path())

    def test_changes_with_the_hook(self):
        hook = self.host.guest_file(base.HOOK_FILE)
        original_content = self.read(hook)
        original = self.digest()
        self.edit(hook, original_content + b'# one more line\n')
        edited = self.digest()
        self.assertNotEqual(original, edited)
        self.edit(hook, original_content)
        self.assertEqual(original, self.digest())

    def test_changes_with_the_guestutil_source(self):
        source = self.host.guest_file(base.GUESTUTIL_SOURCE)
        original = self.digest()
        self.edit(source, self.read(source) + b'/* one more line */\n')
        self.assertNotEqual(original, self.digest())

    def test_ignores_other_files_beside_the_hook(self):
        original = self.digest()
        self.edit(self.host.guest_file('README.rst'), b'rewritten\n')
        self.assertEqual(original, self.digest())

    def test_changes_with_the_installed_libc(self):
        original = self.digest()
        self.useFixture(fixtures.MonkeyPatch(
            'nova_substrate.guests.base.dpkg_version',
            lambda package: '2.36-9+deb12u9'))
        self.assertNotEqual(original, self.digest())

    def test_recipes_differ(self):
        digests = {name: recipe().digest()
                   for name, recipe in guests._RECIPES.items()}
        self.assertEqual(len(digests), len(set(digests.values())))


class HostKernelDigestMixin(object):
    """The digest of a guest that boots the host's kernel."""

    def test_changes_with_the_host_kernel(self):
        original = self.digest()
        self.edit(os.path.join(self.host.boot,
                               'vmlinuz-' + fakes.KERNEL_VERSION),
                  b'kernel rebuilt')
        updated = self.digest()
        self.assertNotEqual(original, updated)
        self.host.add_kernel('6.1.0-30-cloud-amd64')
        self.assertNotIn(self.digest(), (original, updated))


class TinyDigestTest(HostKernelDigestMixin, DigestTestMixin,
                     RecipeTestCase):

    RECIPE = tiny.TinyRecipe

    def test_changes_with_busybox(self):
        original = self.digest()
        self.host.add_tool('busybox', fakes.elf64() + b'1.36')
        self.assertNotEqual(original, self.digest())

    def test_changes_with_the_guest_agent(self):
        original = self.digest()
        qemu_ga, _package = self.host.binaries[0]
        self.edit(qemu_ga, self.read(qemu_ga) + b'8.0')
        self.assertNotEqual(original, self.digest())


class DebianDigestTest(HostKernelDigestMixin, DigestTestMixin,
                       RecipeTestCase):

    RECIPE = debian.DebianRecipe

    def test_changes_with_the_host_initrd(self):
        original = self.digest()
        self.edit(os.path.join(self.host.boot,
                               'initrd.img-' + fakes.KERNEL_VERSION),
                  b'initrd rebuilt')
        self.assertNotEqual(original, self.digest())


class CloudDigestTest(DigestTestMixin, RecipeTestCase):

    RECIPE = cloud.CloudRecipe

    def with_versions(self, **versions):
        """The digest with these packages at other versions on the host."""
        self.useFixture(fixtures.MonkeyPatch(
            'nova_substrate.guests.base.dpkg_version',
            lambda package: versions.get(package,
                                         self.host.dpkg_version(package))))
        return self.digest()

    def test_changes_with_the_package_list(self):
        original = self.digest()
        self.useFixture(fixtures.MonkeyPatch(
            'nova_substrate.guests.cloud.PACKAGES',
            cloud.PACKAGES + ('locales',)))
        self.assertNotEqual(original, self.digest())

    def test_changes_with_each_host_package_it_uses(self):
        original = self.digest()
        digests = [self.with_versions(**{package: '99'})
                   for package in ('debootstrap', 'libc6-dev',
                                   'grub2-common', 'grub-pc-bin')]
        self.assertNotIn(original, digests)
        self.assertEqual(len(digests), len(set(digests)))

    def test_ignores_the_host_kernel(self):
        # The image has a kernel of its own.
        original = self.digest()
        self.edit(os.path.join(self.host.boot,
                               'vmlinuz-' + fakes.KERNEL_VERSION),
                  b'kernel rebuilt')
        self.host.add_kernel('6.1.0-30-cloud-amd64')
        self.assertEqual(original, self.digest())


class HostKernelTest(RecipeTestCase):

    def test_newest_cloud_kernel_by_version_number(self):
        self.host.add_kernel('6.1.0-9-cloud-amd64')
        self.host.add_kernel('6.1.0-99-amd64')
        kernel = base.find_host_kernel('tiny')
        self.assertEqual(fakes.KERNEL_VERSION, kernel.version)
        self.assertEqual(os.path.join(self.host.boot,
                                      'vmlinuz-' + fakes.KERNEL_VERSION),
                         kernel.vmlinuz)
        self.assertEqual(os.path.join(self.host.modules_root,
                                      fakes.KERNEL_VERSION),
                         kernel.modules_dir)


class ElfInterpreterTest(testtools.TestCase):

    def write(self, content):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 'bin')
        fakes.write_file(path, content, 0o755)
        return path

    def test_static_binary_has_none(self):
        self.assertIsNone(base.elf_interpreter(self.write(fakes.elf64())))

    def test_dynamic_binary_names_its_loader(self):
        path = self.write(fakes.elf64('/lib64/ld-linux-x86-64.so.2'))
        self.assertEqual('/lib64/ld-linux-x86-64.so.2',
                         base.elf_interpreter(path))

    def test_script_is_refused(self):
        path = self.write(b'#!/bin/sh\n')
        self.assertRaises(base.GuestBuildError, base.elf_interpreter, path)


class PrerequisiteTest(RecipeTestCase):
    """A missing prerequisite names the Debian package that provides it."""

    def setUp(self):
        super().setUp()
        self.cache_dir = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'cache')

    def assertMissing(self, package, what, guest='tiny', check=None):
        if check is None:
            e = self.assertRaises(base.MissingPrerequisite, guests.get_guest,
                                  guest, cache_dir=self.cache_dir)
        else:
            e = self.assertRaises(base.MissingPrerequisite, check)
        self.assertIsInstance(e, guests.GuestBuildError)
        self.assertEqual((guest, package), (e.guest, e.package))
        self.assertIn(what, e.what)
        self.assertIn('the %s guest needs ' % guest, str(e))
        self.assertTrue(str(e).endswith('install the Debian package %s'
                                        % package), str(e))
        # nothing is built, so not even the cache directory is made
        self.assertFalse(os.path.exists(self.cache_dir))
        return e

    def remove_kernel(self):
        os.unlink(os.path.join(self.host.boot,
                               'vmlinuz-' + fakes.KERNEL_VERSION))

    def test_fake_host_has_everything(self):
        for recipe in (tiny.TinyRecipe(), debian.DebianRecipe(),
                       cloud.CloudRecipe()):
            recipe.check_prerequisites()
            recipe.check_build_prerequisites()

    def test_no_cloud_kernel(self):
        self.remove_kernel()
        self.host.add_kernel('6.1.0-28-amd64')
        for guest in ('tiny', 'debian'):
            self.assertMissing(CLOUD_KERNEL_PACKAGE, 'vmlinuz-*-cloud-amd64',
                               guest)
        # the cloud guest brings its own
        recipe = cloud.CloudRecipe()
        recipe.check_prerequisites()
        recipe.check_build_prerequisites()
        self.assertRegex(recipe.digest(), '^[0-9a-f]{64}$')

    def test_kernel_without_modules(self):
        self.remove_kernel()
        self.host.add_kernel('6.1.0-29-cloud-amd64', modules=False)
        e = self.assertMissing(CLOUD_KERNEL_PACKAGE, 'modules')
        self.assertIn('6.1.0-29-cloud-amd64', e.what)

    def test_kernel_without_initrd_is_enough_for_tiny_only(self):
        os.unlink(os.path.join(self.host.boot,
                               'initrd.img-' + fakes.KERNEL_VERSION))
        tiny.TinyRecipe().check_prerequisites()
        self.assertMissing(CLOUD_KERNEL_PACKAGE, 'initrd', 'debian')

    def test_no_busybox(self):
        self.host.remove_tool('busybox')
        self.assertMissing('busybox-static', 'busybox')

    def test_dynamic_busybox(self):
        self.host.add_tool('busybox', fakes.elf64('/lib/ld.so'))
        e = self.assertMissing('busybox-static', 'statically linked')
        self.assertIn('is dynamic', e.what)

    def test_no_guest_agent(self):
        qemu_ga, package = self.host.binaries[0]
        os.unlink(qemu_ga)
        self.assertEqual('qemu-guest-agent', package)
        self.assertMissing(package, qemu_ga)

    def test_build_tools(self):
        for tool, package in (('gcc', 'gcc'), ('mkfs.ext4', 'e2fsprogs'),
                              ('qemu-img', 'qemu-utils')):
            self.host.remove_tool(tool)
            for recipe in (tiny.TinyRecipe(), debian.DebianRecipe(),
                           cloud.CloudRecipe()):
                self.assertMissing(package, tool, recipe.name,
                                   recipe.check_build_prerequisites)
            self.host.add_tool(tool, b'')

    def test_static_libc(self):
        os.unlink(self.host.libc)
        self.assertMissing('libc6-dev', 'libc.a', 'tiny',
                           tiny.TinyRecipe().check_build_prerequisites)

    def test_debootstrap(self):
        self.host.remove_tool('debootstrap')
        tiny.TinyRecipe().check_build_prerequisites()
        for recipe in (debian.DebianRecipe(), cloud.CloudRecipe()):
            self.assertMissing('debootstrap', 'debootstrap', recipe.name,
                               recipe.check_build_prerequisites)

    def test_debian_guests_need_root(self):
        self.useFixture(fixtures.MonkeyPatch('os.geteuid', lambda: 1000))
        for recipe in (debian.DebianRecipe(), cloud.CloudRecipe()):
            e = self.assertRaises(base.GuestBuildError,
                                  recipe.check_build_prerequisites)
            # no package would help
            self.assertNotIsInstance(e, base.MissingPrerequisite)
            self.assertIn('needs root', str(e))

    def test_cloud_guest_tools(self):
        check = cloud.CloudRecipe().check_build_prerequisites
        for tool, package in (('grub-install', 'grub2-common'),
                              ('mount', 'mount'), ('umount', 'mount')):
            self.host.remove_tool(tool)
            tiny.TinyRecipe().check_build_prerequisites()
            debian.DebianRecipe().check_build_prerequisites()
            self.assertMissing(package, tool, 'cloud', check)
            self.host.add_tool(tool, b'')

    def test_cloud_guest_needs_grub_for_bios_pcs(self):
        os.unlink(os.path.join(self.host.grub_pc_dir, 'boot.img'))
        e = self.assertMissing('grub-pc-bin', self.host.grub_pc_dir, 'cloud',
                               cloud.CloudRecipe().check_build_prerequisites)
        self.assertIn('GRUB for BIOS PCs', e.what)


class GetGuestTest(testtools.TestCase):

    def test_known_guests(self):
        self.assertEqual(('cloud', 'debian', 'tiny'), guests.GUEST_NAMES)

    def test_unknown_guest(self):
        cache_dir = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                 'cache')
        e = self.assertRaises(ValueError, guests.get_guest, 'windows',
                              cache_dir=cache_dir)
        self.assertEqual("unknown test guest 'windows'; known: cloud, "
                         "debian, tiny", str(e))
        self.assertFalse(os.path.exists(cache_dir))

    def test_builds_into_the_cache_the_environment_names(self):
        log = self.useFixture(fixtures.FakeLogger())
        cache_dir = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                 'cache')
        self.useFixture(fixtures.EnvironmentVariable(
            'NOVA_SUBSTRATE_GUEST_CACHE', cache_dir))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_substrate.guests._RECIPES', {'fake': fakes.FakeRecipe}))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_substrate.guests.base.qcow2_virtual_size',
            fakes.fake_qcow2_virtual_size))
        image = guests.get_guest('fake')
        self.assertEqual('fake', image.name)
        self.assertEqual(cache_dir, os.path.dirname(os.path.dirname(
            image.disk)))
        self.assertEqual(image, guests.get_guest('fake'))
        # without a progress callback, the build's steps are logged
        self.assertIn('building the fake guest in', log.output)
