"""The host's hook and helper: found, versioned, compiled into a safe cache."""

import hashlib
import os
import stat

import fixtures
import testtools

from nova_substrate.engine import exception
from nova_substrate.engine import guest_tools
from nova_substrate.guests import base as guests_base

HELPER_SOURCE = b'int main(void) { return 0; }\n'
HOOK_TEXT = '#!/bin/sh\nPATH=/bin\nHOOK_VERSION=3\nSTATE_DIR=/run\n'
RUNNER_TEXT = '#!/usr/bin/python3\nprint("runner")\n'
NOBODY = 65534


def _can_link_statically():
    try:
        guest_tools._find_compiler()
    except exception.MissingBuildTool:
        return False
    return True


class HookVersionTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path

    def write(self, text):
        path = os.path.join(self.dir, 'hook')
        with open(path, 'w') as f:
            f.write(text)
        return path

    def test_plain(self):
        self.assertEqual('3', guest_tools.hook_version(self.write(HOOK_TEXT)))

    def test_quoted(self):
        self.assertEqual('2.1', guest_tools.hook_version(
            self.write('HOOK_VERSION="2.1"\n')))

    def test_only_an_assignment_at_line_start_counts(self):
        self.assertIsNone(guest_tools.parse_hook_version(
            'echo HOOK_VERSION=1\n  # HOOK_VERSION=2 x\n'))

    def test_missing(self):
        e = self.assertRaises(exception.GuestToolsError,
                              guest_tools.hook_version,
                              self.write('#!/bin/sh\n'))
        self.assertIn('sets no HOOK_VERSION', str(e))

    def test_unreadable(self):
        self.assertRaises(exception.GuestToolsError,
                          guest_tools.hook_version, self.dir + '/missing')

    def test_shipped_hook_has_a_version(self):
        tools = guest_tools.GuestTools(cache_dir=self.dir)
        self.assertRegex(tools.hook_version(), r'^\S+$')


class SourceDirTest(testtools.TestCase):

    def test_checkout_guest_dir(self):
        self.useFixture(fixtures.EnvironmentVariable(
            guest_tools.GUEST_SRC_ENV))
        found = guest_tools.find_source_dir()
        self.assertTrue(os.path.isfile(os.path.join(
            found, guest_tools.GUESTUTIL_SOURCE)))
        self.assertTrue(os.path.isfile(os.path.join(
            found, guest_tools.CLOUD_INIT_RUNNER_FILE)))

    def test_environment_wins(self):
        src = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(src, guest_tools.HOOK_FILE), 'w') as f:
            f.write(HOOK_TEXT)
        with open(os.path.join(src, guest_tools.CLOUD_INIT_RUNNER_FILE),
                  'w') as f:
            f.write(RUNNER_TEXT)
        self.useFixture(fixtures.EnvironmentVariable(
            guest_tools.GUEST_SRC_ENV, src))
        self.assertEqual(os.path.realpath(src), guest_tools.find_source_dir())
        # The runner is taken from the same directory.
        self.assertEqual(
            os.path.join(os.path.realpath(src),
                         guest_tools.CLOUD_INIT_RUNNER_FILE),
            guest_tools.GuestTools().cloud_init_runner_source())


class CloudInitRunnerTest(testtools.TestCase):

    def test_beside_the_hook(self):
        src = self.useFixture(fixtures.TempDir()).path
        tools = guest_tools.GuestTools(cache_dir=src, source_dir=src)
        self.assertEqual(os.path.join(src, 'nova-substrate-cloud-init'),
                         tools.cloud_init_runner_source())
        self.assertEqual(os.path.dirname(tools.hook_source()),
                         os.path.dirname(tools.cloud_init_runner_source()))

    def test_shipped_runner_is_a_python_script(self):
        self.useFixture(fixtures.EnvironmentVariable(
            guest_tools.GUEST_SRC_ENV))
        tools = guest_tools.GuestTools(
            cache_dir=self.useFixture(fixtures.TempDir()).path)
        data = guest_tools.read_file(tools.cloud_init_runner_source())
        self.assertTrue(data.startswith(b'#!/usr/bin/python3\n'))
        # Valid Python: a syntax error would only show in the guest.
        compile(data, tools.cloud_init_runner_source(), 'exec')


class GuestutilCacheTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.src = os.path.join(self.tmp, 'src')
        os.mkdir(self.src)
        with open(os.path.join(self.src, guest_tools.HOOK_FILE), 'w') as f:
            f.write(HOOK_TEXT)
        with open(os.path.join(self.src, guest_tools.CLOUD_INIT_RUNNER_FILE),
                  'w') as f:
            f.write(RUNNER_TEXT)
        self.write_source(HELPER_SOURCE)
        self.cache = os.path.join(self.tmp, 'var', 'guest-tools')

    def write_source(self, source):
        with open(os.path.join(self.src, guest_tools.GUESTUTIL_SOURCE),
                  'wb') as f:
            f.write(source)

    def tools(self, cache=None):
        return guest_tools.GuestTools(cache_dir=cache or self.cache,
                                      source_dir=self.src)

    def skip_unless_compiler(self):
        if not _can_link_statically():
            self.skipTest('needs gcc and libc.a')

    def test_compiled_once_named_by_source_hash(self):
        self.skip_unless_compiler()
        tools = self.tools()
        path = tools.guestutil_binary()
        self.assertEqual(os.path.join(
            self.cache,
            'guestutil-' + hashlib.sha256(HELPER_SOURCE).hexdigest()), path)
        with open(path, 'rb') as f:
            self.assertEqual(b'\x7fELF', f.read(4))
        self.assertEqual(0o755, stat.S_IMODE(os.stat(path).st_mode))
        self.assertEqual(0o700, stat.S_IMODE(os.stat(self.cache).st_mode))
        # Written under a temporary name, renamed: nothing else is left.
        self.assertEqual([os.path.basename(path)], os.listdir(self.cache))
        # Second use: no compiler.
        run = self.useFixture(fixtures.MockPatch(
            'nova_substrate.engine.guest_tools.subprocess.run')).mock
        self.assertEqual(path, tools.guestutil_binary())
        run.assert_not_called()

    def test_new_source_new_binary(self):
        self.skip_unless_compiler()
        tools = self.tools()
        first = tools.guestutil_binary()
        self.write_source(HELPER_SOURCE + b'/* changed */\n')
        second = tools.guestutil_binary()
        self.assertNotEqual(first, second)
        self.assertEqual(sorted(os.path.basename(p) for p in (first, second)),
                         sorted(os.listdir(self.cache)))

    def test_compile_error_is_reported_and_leaves_nothing(self):
        self.skip_unless_compiler()
        self.write_source(b'int main(void) { return syntax error; }\n')
        e = self.assertRaises(exception.GuestToolsError,
                              self.tools().guestutil_binary)
        self.assertIn('gcc failed to compile the guest helper', str(e))
        self.assertIn('error', str(e))
        self.assertEqual([], os.listdir(self.cache))

    def test_shipped_guestutil_compiles_statically(self):
        self.skip_unless_compiler()
        tools = guest_tools.GuestTools(cache_dir=self.cache)
        path = tools.guestutil_binary()
        # No program interpreter: it runs whatever the guest's C library.
        self.assertIsNone(guests_base.elf_interpreter(path))

    def test_symlinked_cache_dir_is_refused(self):
        real = os.path.join(self.tmp, 'elsewhere')
        os.mkdir(real, 0o700)
        os.makedirs(os.path.dirname(self.cache))
        os.symlink(real, self.cache)
        e = self.assertRaises(exception.UnsafeCacheDir,
                              self.tools().guestutil_binary)
        self.assertIn('is a symbolic link', str(e))
        self.assertEqual([], os.listdir(real))

    def test_foreign_cache_dir_is_refused(self):
        if os.geteuid() != 0:
            self.skipTest('needs root to give a directory away')
        os.makedirs(self.cache, 0o700)
        os.chown(self.cache, NOBODY, NOBODY)
        e = self.assertRaises(exception.UnsafeCacheDir,
                              self.tools().guestutil_binary)
        self.assertIn('owned by uid %d' % NOBODY, str(e))
        self.assertEqual([], os.listdir(self.cache))

    def test_foreign_cache_dir_is_refused_for_any_user(self):
        # As another user: the directory root made is not ours.
        os.makedirs(self.cache, 0o700)
        self.useFixture(fixtures.MockPatch(
            'nova_substrate.engine.guest_tools.os.geteuid',
            return_value=os.geteuid() + 4242))
        self.assertRaises(exception.UnsafeCacheDir,
                          self.tools().guestutil_binary)

    def test_cache_dir_writable_by_others_is_refused(self):
        os.makedirs(self.cache)
        os.chmod(self.cache, 0o777)
        e = self.assertRaises(exception.UnsafeCacheDir,
                              self.tools().guestutil_binary)
        self.assertIn('writable by other users (mode 777)', str(e))

    def test_parent_writable_by_others_is_refused(self):
        # Another user could rename the cache away and put theirs there.
        parent = os.path.dirname(self.cache)
        os.makedirs(parent)
        os.chmod(parent, 0o777)
        e = self.assertRaises(exception.UnsafeCacheDir,
                              self.tools().guestutil_binary)
        self.assertIn(parent, str(e))

    def test_sticky_parent_is_accepted(self):
        parent = os.path.dirname(self.cache)
        os.makedirs(parent)
        os.chmod(parent, 0o1777)
        guest_tools.ensure_private_dir(self.cache)
        self.assertEqual(0o700, stat.S_IMODE(os.stat(self.cache).st_mode))

    def test_missing_gcc_names_the_packages(self):
        self.useFixture(fixtures.MockPatch(
            'nova_substrate.engine.guest_tools.shutil.which',
            return_value=None))
        e = self.assertRaises(exception.MissingBuildTool,
                              self.tools().guestutil_binary)
        self.assertIsInstance(e, exception.GuestToolsError)
        self.assertIn('needs gcc', str(e))
        self.assertIn('Debian packages gcc and libc6-dev', str(e))
        self.assertEqual([], os.listdir(self.cache))

    def test_missing_libc_a_names_the_packages(self):
        # A gcc with no static C library prints the bare file name.
        fake_gcc = os.path.join(self.tmp, 'gcc')
        with open(fake_gcc, 'w') as f:
            f.write('#!/bin/sh\necho libc.a\n')
        os.chmod(fake_gcc, 0o755)
        self.useFixture(fixtures.MockPatch(
            'nova_substrate.engine.guest_tools.shutil.which',
            return_value=fake_gcc))
        e = self.assertRaises(exception.MissingBuildTool,
                              self.tools().guestutil_binary)
        self.assertIn('static C library (libc.a)', str(e))
        self.assertIn('Debian packages gcc and libc6-dev', str(e))

    def test_cache_file_not_ours_is_rebuilt(self):
        self.skip_unless_compiler()
        tools = self.tools()
        path = tools.guestutil_binary()
        os.chmod(path, 0o777)
        self.assertEqual(path, tools.guestutil_binary())
        self.assertEqual(0o755, stat.S_IMODE(os.stat(path).st_mode))

    def test_missing_source(self):
        os.unlink(os.path.join(self.src, guest_tools.GUESTUTIL_SOURCE))
        e = self.assertRaises(exception.GuestToolsError,
                              self.tools().guestutil_binary)
        self.assertIn(guest_tools.GUESTUTIL_SOURCE, str(e))
