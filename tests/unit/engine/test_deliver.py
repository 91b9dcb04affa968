"""Installing the hook and its helper through a fake guest agent."""

import base64
import os
import stat
import subprocess
import time

import fixtures
import testtools

from nova_substrate.engine import deliver
from nova_substrate.engine import exception
from nova_substrate.engine import guest as guest_agent

HOOK = '/usr/sbin/nova-substrate-hook'
GUESTUTIL = '/usr/sbin/nova-substrate-guestutil'
HOOK_TEXT = '#!/bin/sh\nHOOK_VERSION=7\necho hook\n'
# Three writes: two full chunks and the rest.
GUESTUTIL_BYTES = os.urandom(2 * deliver.CHUNK_BYTES + 1000)


class FakeAgent(object):
    """A guest agent whose guest is a directory of the host.

    File commands act on root + path; guest-exec runs the host's /bin/sh
    with every absolute path among its arguments moved under root, so the
    scripts deliver sends are really run.
    """

    def __init__(self, root):
        self.root = root
        self.commands = []
        self.runs = []
        self.handles = {}
        self.fail = {}          # execute -> (call number, error)
        self.short_write = False
        self.fail_script = None
        os.makedirs(self.host_path('/usr/sbin'))

    def host_path(self, path):
        return self.root + path

    def command(self, execute, arguments=None, timeout=10):
        self.commands.append((execute, arguments, timeout))
        calls = sum(1 for c in self.commands if c[0] == execute)
        when, error = self.fail.get(execute, (None, None))
        if when == calls:
            raise error
        if execute == 'guest-file-open':
            self.assertMode(arguments)
            handle = 1000 + len(self.handles)
            self.handles[handle] = open(self.host_path(arguments['path']),
                                        'wb')
            return handle
        f = self.handles[arguments['handle']]
        if execute == 'guest-file-write':
            data = base64.b64decode(arguments['buf-b64'])
            f.write(data)
            return {'count': len(data) - self.short_write, 'eof': False}
        if execute == 'guest-file-close':
            f.close()
            return {}
        raise AssertionError('unexpected %s' % execute)

    def assertMode(self, arguments):
        if arguments['mode'] != 'w':
            raise AssertionError('opened %r' % arguments)

    def run(self, path, args=(), stdin=None, deadline=None):
        self.runs.append((path, list(args), deadline))
        if args[1] == self.fail_script:
            return guest_agent.ExecResult(1, '', 'mv: no space left')
        argv = [self.host_path(a) if a.startswith('/') else a
                for a in args]
        result = subprocess.run([path] + argv, capture_output=True,
                                text=True, check=False, timeout=10)
        return guest_agent.ExecResult(result.returncode, result.stdout,
                                      result.stderr)

    def files(self):
        """Names in the guest's /usr/sbin."""
        return sorted(os.listdir(self.host_path('/usr/sbin')))

    def read(self, path):
        with open(self.host_path(path), 'rb') as f:
            return f.read()

    def put(self, path, data, mode=0o755):
        with open(self.host_path(path), 'wb') as f:
            f.write(data)
        os.chmod(self.host_path(path), mode)


class FakeTools(object):

    def __init__(self, directory):
        self.hook = os.path.join(directory, 'nova-substrate-hook')
        self.guestutil = os.path.join(directory, 'guestutil')
        with open(self.hook, 'w') as f:
            f.write(HOOK_TEXT)
        with open(self.guestutil, 'wb') as f:
            f.write(GUESTUTIL_BYTES)

    def hook_source(self):
        return self.hook

    def hook_version(self):
        return '7'

    def guestutil_binary(self):
        return self.guestutil


class InstallTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.agent = FakeAgent(self.useFixture(fixtures.TempDir()).path)
        self.tools = FakeTools(self.useFixture(fixtures.TempDir()).path)

    def install(self, deadline=None):
        return deliver.install_guest_tools(
            self.agent, HOOK, GUESTUTIL, self.tools,
            deadline or time.monotonic() + 30)

    def calls(self, execute):
        return [args for name, args, _t in self.agent.commands
                if name == execute]

    def assertInstalled(self):
        self.assertEqual(HOOK_TEXT.encode(), self.agent.read(HOOK))
        self.assertEqual(GUESTUTIL_BYTES, self.agent.read(GUESTUTIL))
        for path in (HOOK, GUESTUTIL):
            mode = os.stat(self.agent.host_path(path)).st_mode
            self.assertEqual(0o755, stat.S_IMODE(mode))
        # No temporary file is left beside them.
        self.assertEqual(['nova-substrate-guestutil', 'nova-substrate-hook'],
                         self.agent.files())

    def test_bare_guest_gets_both(self):
        self.assertTrue(self.install())
        self.assertInstalled()
        # One check, one install: two guest-execs in all.
        self.assertEqual(2, len(self.agent.runs))

    def test_writes_in_chunks_the_agent_accepts(self):
        self.install()
        sizes = [len(base64.b64decode(a['buf-b64']))
                 for a in self.calls('guest-file-write')]
        self.assertEqual([deliver.CHUNK_BYTES, deliver.CHUNK_BYTES, 1000,
                          len(HOOK_TEXT)], sizes)
        self.assertEqual(2, len(self.calls('guest-file-close')))

    def test_writes_hidden_temp_files_then_renames_them_in_one_exec(self):
        self.install()
        temps = [a['path'] for a in self.calls('guest-file-open')]
        self.assertEqual(2, len(temps))
        for temp, target in zip(temps, (GUESTUTIL, HOOK)):
            self.assertEqual('/usr/sbin', os.path.dirname(temp))
            self.assertTrue(os.path.basename(temp).startswith(
                '.' + os.path.basename(target) + '.'))
            self.assertTrue(temp.endswith('.tmp'))
        path, args, _deadline = self.agent.runs[-1]
        self.assertEqual('/bin/sh', path)
        self.assertEqual(['-c', deliver._INSTALL_SCRIPT, 'sh',
                          temps[0], GUESTUTIL, temps[1], HOOK], args)
        # The hook is renamed last: its version marks a complete install.
        self.assertLess(deliver._INSTALL_SCRIPT.index('"$2"'),
                        deliver._INSTALL_SCRIPT.index('"$4"'))

    def test_same_version_installs_nothing(self):
        self.agent.put(HOOK, b'#!/bin/sh\nHOOK_VERSION=7\n')
        self.agent.put(GUESTUTIL, b'old helper')
        self.assertFalse(self.install())
        self.assertEqual([], self.agent.commands)
        self.assertEqual(1, len(self.agent.runs))
        self.assertEqual(b'old helper', self.agent.read(GUESTUTIL))

    def test_quoted_version_is_the_same_version(self):
        self.agent.put(HOOK, b'#!/bin/sh\nHOOK_VERSION="7"\n')
        self.agent.put(GUESTUTIL, b'old helper')
        self.assertFalse(self.install())

    def test_other_version_is_replaced(self):
        self.agent.put(HOOK, b'#!/bin/sh\nHOOK_VERSION=6\n')
        self.agent.put(GUESTUTIL, b'old helper')
        self.assertTrue(self.install())
        self.assertInstalled()

    def test_hook_without_version_is_replaced(self):
        self.agent.put(HOOK, b'#!/bin/sh\necho hello\n')
        self.agent.put(GUESTUTIL, b'old helper')
        self.assertTrue(self.install())
        self.assertInstalled()

    def test_missing_helper_brings_both(self):
        self.agent.put(HOOK, HOOK_TEXT.encode())
        self.assertTrue(self.install())
        self.assertInstalled()

    def test_hook_not_executable_is_replaced(self):
        self.agent.put(HOOK, HOOK_TEXT.encode(), mode=0o644)
        self.agent.put(GUESTUTIL, b'old helper')
        self.assertTrue(self.install())
        self.assertInstalled()

    def test_installed_version(self):
        self.assertIsNone(deliver.installed_version(
            self.agent, HOOK, GUESTUTIL, time.monotonic() + 30))
        self.agent.put(HOOK, b'#!/bin/sh\nHOOK_VERSION=12\n')
        self.agent.put(GUESTUTIL, b'helper')
        self.assertEqual('12', deliver.installed_version(
            self.agent, HOOK, GUESTUTIL, time.monotonic() + 30))

    def test_calls_are_bounded_by_the_deadline(self):
        deadline = time.monotonic() + 30
        self.install(deadline)
        for _name, _args, timeout in self.agent.commands:
            self.assertLessEqual(timeout, 30)
        for _path, _args, run_deadline in self.agent.runs:
            self.assertEqual(deadline, run_deadline)

    def test_past_deadline_asks_the_guest_nothing(self):
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install, time.monotonic() - 1)
        self.assertIsInstance(e.__cause__, exception.GuestAgentTimeout)
        self.assertEqual(HOOK, e.path)
        self.assertEqual([], self.agent.runs)
        self.assertEqual([], self.agent.commands)

    def test_failed_write_names_the_path_and_cleans_up(self):
        self.agent.fail['guest-file-write'] = (
            2, exception.GuestCommandFailed('guest agent guest-file-write '
                                            'failed: No space left'))
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install)
        self.assertIsInstance(e, exception.SubstrateError)
        self.assertEqual(GUESTUTIL, e.path)
        self.assertIn('writing /usr/sbin/.nova-substrate-guestutil.', str(e))
        self.assertIn('No space left', str(e))
        # The handle was closed and the temporary file removed.
        self.assertEqual(1, len(self.calls('guest-file-close')))
        self.assertEqual([], self.agent.files())
        self.assertEqual(['rm -f "$@"'],
                         [args[1] for _p, args, _d in self.agent.runs[1:]])

    def test_short_write_is_an_error(self):
        self.agent.short_write = True
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install)
        self.assertIn('wrote %d of %d bytes' % (deliver.CHUNK_BYTES - 1,
                                                deliver.CHUNK_BYTES), str(e))
        self.assertEqual([], self.agent.files())

    def test_failed_open_of_the_hook_removes_the_written_helper(self):
        self.agent.fail['guest-file-open'] = (
            2, exception.GuestAgentTimeout('no answer'))
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install)
        self.assertEqual(HOOK, e.path)
        self.assertIn('creating /usr/sbin/.nova-substrate-hook.', str(e))
        self.assertEqual([], self.agent.files())

    def test_failed_rename_names_the_path_and_cleans_up(self):
        self.agent.fail_script = deliver._INSTALL_SCRIPT
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install)
        self.assertEqual(HOOK, e.path)
        self.assertIn('installing %s in the guest failed (exit 1): mv: no '
                      'space left' % HOOK, str(e))
        self.assertEqual([], self.agent.files())

    def test_failed_check_is_a_delivery_error(self):
        self.agent.fail_script = deliver._CHECK_SCRIPT
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install)
        self.assertIn('checking %s' % HOOK, str(e))
        self.assertEqual([], self.agent.commands)

    def test_host_side_failure_leaves_the_guest_alone(self):
        os.unlink(self.tools.guestutil)
        self.assertRaises(exception.GuestToolsError, self.install)
        self.assertEqual([], self.agent.commands)
        self.assertEqual(1, len(self.agent.runs))

    def test_temp_name_is_beside_its_target(self):
        a = deliver.temp_name('/usr/sbin/x')
        b = deliver.temp_name('/usr/sbin/x')
        self.assertNotEqual(a, b)
        self.assertEqual('/usr/sbin', os.path.dirname(a))
