"""Installing the hook, its helper and the cloud-init runner through a fake
guest agent."""

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
from nova_substrate.engine import guest_tools

HOOK = '/usr/sbin/nova-substrate-hook'
GUESTUTIL = '/usr/sbin/nova-substrate-guestutil'
RUNNER = deliver.CLOUD_INIT_RUNNER_PATH
HOOK_TEXT = '#!/bin/sh\nHOOK_VERSION=7\necho hook\n'
# Three writes: two full chunks and the rest.
GUESTUTIL_BYTES = os.urandom(2 * deliver.CHUNK_BYTES + 1000)
# Two writes: one full chunk and 500 bytes.
RUNNER_BYTES = (b'#!/usr/bin/python3\n' +
                b'#' * (deliver.CHUNK_BYTES + 480) + b'\n')
# The names the three leave in /usr/sbin.
INSTALLED = sorted(os.path.basename(p) for p in (HOOK, GUESTUTIL, RUNNER))


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
        self.before_run = None  # called with the args of each guest-exec
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
        if self.before_run is not None:
            self.before_run(list(args))
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
        self.runner = os.path.join(directory, 'nova-substrate-cloud-init')
        with open(self.hook, 'w') as f:
            f.write(HOOK_TEXT)
        with open(self.guestutil, 'wb') as f:
            f.write(GUESTUTIL_BYTES)
        with open(self.runner, 'wb') as f:
            f.write(RUNNER_BYTES)

    def hook_source(self):
        return self.hook

    def hook_version(self):
        return '7'

    def guestutil_binary(self):
        return self.guestutil

    def cloud_init_runner_source(self):
        return self.runner


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

    def removed(self):
        """The paths each guest-exec of the remove script was given."""
        return [args[3:] for _p, args, _d in self.agent.runs
                if args[1] == deliver._REMOVE_SCRIPT]

    def put_all(self, hook=HOOK_TEXT.encode(), mode=0o755):
        """An install already there: the hook given, old helper, runner."""
        self.agent.put(HOOK, hook, mode)
        self.agent.put(GUESTUTIL, b'old helper')
        self.agent.put(RUNNER, b'old runner')

    def assertInstalled(self):
        self.assertEqual(HOOK_TEXT.encode(), self.agent.read(HOOK))
        self.assertEqual(GUESTUTIL_BYTES, self.agent.read(GUESTUTIL))
        self.assertEqual(RUNNER_BYTES, self.agent.read(RUNNER))
        for path in (HOOK, GUESTUTIL, RUNNER):
            mode = os.stat(self.agent.host_path(path)).st_mode
            self.assertEqual(0o755, stat.S_IMODE(mode))
        # No temporary file is left beside them.
        self.assertEqual(INSTALLED, self.agent.files())

    def test_runner_path_is_the_hooks(self):
        # Where the hook looks for the runner and the helper is where they
        # are delivered.
        hook = guest_tools.read_file(
            guest_tools.GuestTools().hook_source()).decode()
        self.assertIn('\nCLOUD_INIT_RUNNER=%s\n' % RUNNER, hook)
        self.assertIn('\nGUESTUTIL=%s\n' % deliver.GUESTUTIL_PATH, hook)
        self.assertEqual('/usr/sbin/nova-substrate-cloud-init', RUNNER)

    def test_bare_guest_gets_all_three(self):
        self.assertTrue(self.install())
        self.assertInstalled()
        # One check, one install: two guest-execs in all.
        self.assertEqual(2, len(self.agent.runs))

    def test_writes_in_chunks_the_agent_accepts(self):
        self.install()
        sizes = [len(base64.b64decode(a['buf-b64']))
                 for a in self.calls('guest-file-write')]
        self.assertEqual([deliver.CHUNK_BYTES, deliver.CHUNK_BYTES, 1000,
                          deliver.CHUNK_BYTES, 500,
                          len(HOOK_TEXT)], sizes)
        self.assertEqual(3, len(self.calls('guest-file-close')))
        # Each file is written through its own handle, closed after it.
        handles = [a['handle'] for a in self.calls('guest-file-write')]
        self.assertEqual([1000, 1000, 1000, 1001, 1001, 1002], handles)
        self.assertEqual([1000, 1001, 1002],
                         [a['handle'] for a in
                          self.calls('guest-file-close')])

    def test_writes_hidden_temp_files_then_renames_them_in_one_exec(self):
        self.install()
        temps = [a['path'] for a in self.calls('guest-file-open')]
        self.assertEqual(3, len(temps))
        self.assertEqual(3, len(set(temps)))
        for temp, target in zip(temps, (GUESTUTIL, RUNNER, HOOK)):
            self.assertEqual('/usr/sbin', os.path.dirname(temp))
            self.assertTrue(os.path.basename(temp).startswith(
                '.' + os.path.basename(target) + '.'))
            self.assertTrue(temp.endswith('.tmp'))
        path, args, _deadline = self.agent.runs[-1]
        self.assertEqual('/bin/sh', path)
        # The hook is renamed last: its version marks a complete install.
        self.assertEqual(['-c', deliver._INSTALL_SCRIPT, 'sh',
                          temps[0], GUESTUTIL, temps[1], RUNNER,
                          temps[2], HOOK], args)

    def test_install_script_renames_pairs_in_order_and_stops_at_a_failure(
            self):
        # Run on the host: a, then b (whose temp is missing: chmod fails),
        # and c is never renamed, so the hook, last, stays as it was.
        d = self.useFixture(fixtures.TempDir()).path
        for name in ('a.tmp', 'c.tmp'):
            with open(os.path.join(d, name), 'w') as f:
                f.write(name)
            os.chmod(os.path.join(d, name), 0o600)
        args = []
        for name in ('a', 'b', 'c'):
            args += [os.path.join(d, name + '.tmp'), os.path.join(d, name)]
        result = subprocess.run(['/bin/sh', '-c', deliver._INSTALL_SCRIPT,
                                 'sh'] + args, capture_output=True,
                                check=False)
        self.assertEqual(1, result.returncode)
        self.assertEqual(['a', 'c.tmp'], sorted(os.listdir(d)))
        self.assertEqual(0o755, stat.S_IMODE(
            os.stat(os.path.join(d, 'a')).st_mode))
        # All three when nothing fails.
        with open(os.path.join(d, 'b.tmp'), 'w') as f:
            f.write('b')
        os.rename(os.path.join(d, 'a'), os.path.join(d, 'a.tmp'))
        result = subprocess.run(['/bin/sh', '-c', deliver._INSTALL_SCRIPT,
                                 'sh'] + args, capture_output=True,
                                check=False)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(['a', 'b', 'c'], sorted(os.listdir(d)))
        for name in ('a', 'b', 'c'):
            with open(os.path.join(d, name)) as f:
                self.assertEqual(name + '.tmp' if name != 'b' else 'b',
                                 f.read())
            self.assertEqual(0o755, stat.S_IMODE(
                os.stat(os.path.join(d, name)).st_mode))

    def test_same_version_installs_nothing(self):
        self.put_all(b'#!/bin/sh\nHOOK_VERSION=7\n')
        self.assertFalse(self.install())
        self.assertEqual([], self.agent.commands)
        self.assertEqual(1, len(self.agent.runs))
        self.assertEqual(b'old helper', self.agent.read(GUESTUTIL))
        self.assertEqual(b'old runner', self.agent.read(RUNNER))

    def test_check_is_given_all_three_paths(self):
        self.install()
        path, args, _deadline = self.agent.runs[0]
        self.assertEqual('/bin/sh', path)
        self.assertEqual(['-c', deliver._CHECK_SCRIPT, 'sh',
                          HOOK, GUESTUTIL, RUNNER], args)

    def test_quoted_version_is_the_same_version(self):
        self.put_all(b'#!/bin/sh\nHOOK_VERSION="7"\n')
        self.assertFalse(self.install())

    def test_other_version_is_replaced(self):
        self.put_all(b'#!/bin/sh\nHOOK_VERSION=6\n')
        self.assertTrue(self.install())
        self.assertInstalled()

    def test_hook_without_version_is_replaced(self):
        self.put_all(b'#!/bin/sh\necho hello\n')
        self.assertTrue(self.install())
        self.assertInstalled()

    def test_missing_helper_brings_all_three(self):
        self.agent.put(HOOK, HOOK_TEXT.encode())
        self.agent.put(RUNNER, b'old runner')
        self.assertTrue(self.install())
        self.assertInstalled()

    def test_missing_runner_brings_all_three(self):
        # A guest given the tools before the runner existed.
        self.agent.put(HOOK, HOOK_TEXT.encode())
        self.agent.put(GUESTUTIL, b'old helper')
        self.assertTrue(self.install())
        self.assertInstalled()
        self.assertEqual(3, len(self.calls('guest-file-open')))

    def test_missing_hook_brings_all_three(self):
        self.agent.put(GUESTUTIL, b'old helper')
        self.agent.put(RUNNER, b'old runner')
        self.assertTrue(self.install())
        self.assertInstalled()

    def test_hook_not_executable_is_replaced(self):
        self.put_all(HOOK_TEXT.encode(), mode=0o644)
        self.assertTrue(self.install())
        self.assertInstalled()

    def test_helper_not_executable_is_replaced(self):
        self.put_all(HOOK_TEXT.encode())
        os.chmod(self.agent.host_path(GUESTUTIL), 0o644)
        self.assertTrue(self.install())
        self.assertInstalled()

    def test_runner_not_executable_is_replaced(self):
        self.put_all(HOOK_TEXT.encode())
        os.chmod(self.agent.host_path(RUNNER), 0o644)
        self.assertTrue(self.install())
        self.assertInstalled()

    def test_runner_that_is_a_directory_is_not_the_runner(self):
        self.agent.put(HOOK, HOOK_TEXT.encode())
        self.agent.put(GUESTUTIL, b'old helper')
        os.mkdir(self.agent.host_path(RUNNER))
        self.assertIsNone(deliver.installed_version(
            self.agent, HOOK, GUESTUTIL, time.monotonic() + 30))

    def test_installed_version(self):
        self.assertIsNone(deliver.installed_version(
            self.agent, HOOK, GUESTUTIL, time.monotonic() + 30))
        self.agent.put(HOOK, b'#!/bin/sh\nHOOK_VERSION=12\n')
        self.agent.put(GUESTUTIL, b'helper')
        # Not without the runner.
        self.assertIsNone(deliver.installed_version(
            self.agent, HOOK, GUESTUTIL, time.monotonic() + 30))
        self.agent.put(RUNNER, b'runner')
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
        self.assertEqual([[a['path'] for a in self.calls('guest-file-open')]],
                         self.removed())
        # Nothing else was opened.
        self.assertEqual(1, len(self.calls('guest-file-open')))

    def test_failed_write_of_the_runner_removes_the_helper_too(self):
        # Writes 1-3 are the helper's, 4 and 5 the runner's.
        self.agent.fail['guest-file-write'] = (
            5, exception.GuestCommandFailed('guest agent guest-file-write '
                                            'failed: No space left'))
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install)
        self.assertEqual(RUNNER, e.path)
        self.assertIn('writing /usr/sbin/.nova-substrate-cloud-init.',
                      str(e))
        # Both handles closed; both temporary files removed in one exec.
        self.assertEqual(2, len(self.calls('guest-file-close')))
        temps = [a['path'] for a in self.calls('guest-file-open')]
        self.assertEqual(2, len(temps))
        self.assertEqual([temps], self.removed())
        self.assertEqual([], self.agent.files())

    def test_short_write_is_an_error(self):
        self.agent.short_write = True
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install)
        self.assertIn('wrote %d of %d bytes' % (deliver.CHUNK_BYTES - 1,
                                                deliver.CHUNK_BYTES), str(e))
        self.assertEqual([], self.agent.files())

    def test_failed_open_of_the_runner_removes_the_written_helper(self):
        self.agent.fail['guest-file-open'] = (
            2, exception.GuestAgentTimeout('no answer'))
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install)
        self.assertEqual(RUNNER, e.path)
        self.assertIn('creating /usr/sbin/.nova-substrate-cloud-init.',
                      str(e))
        self.assertEqual([], self.agent.files())
        # The helper's temporary file among what was removed.
        helper_temp = self.calls('guest-file-open')[0]['path']
        self.assertEqual(1, len(self.removed()))
        self.assertIn(helper_temp, self.removed()[0])

    def test_failed_open_of_the_hook_removes_the_written_helper(self):
        self.agent.fail['guest-file-open'] = (
            3, exception.GuestAgentTimeout('no answer'))
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install)
        self.assertEqual(HOOK, e.path)
        self.assertIn('creating /usr/sbin/.nova-substrate-hook.', str(e))
        self.assertEqual([], self.agent.files())
        # The helper's and the runner's temporary files among those removed.
        written = [a['path'] for a in self.calls('guest-file-open')[:2]]
        self.assertEqual(1, len(self.removed()))
        for temp in written:
            self.assertIn(temp, self.removed()[0])

    def test_failed_close_of_the_runner_names_it_and_cleans_up(self):
        # The agent reports a failed flush (a full disk) at the close.
        self.agent.fail['guest-file-close'] = (
            2, exception.GuestCommandFailed('guest agent guest-file-close '
                                            'failed: No space left'))
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install)
        self.assertEqual(RUNNER, e.path)
        self.assertIn('closing /usr/sbin/.nova-substrate-cloud-init.',
                      str(e))
        self.assertEqual(2, len(self.calls('guest-file-open')))
        self.assertEqual([[a['path'] for a in
                           self.calls('guest-file-open')]], self.removed())
        self.assertEqual([], self.agent.files())

    def test_failed_rename_names_the_path_and_cleans_up(self):
        self.agent.fail_script = deliver._INSTALL_SCRIPT
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install)
        self.assertEqual(HOOK, e.path)
        self.assertIn('installing %s in the guest failed (exit 1): mv: no '
                      'space left' % HOOK, str(e))
        self.assertEqual([], self.agent.files())
        self.assertEqual([[a['path'] for a in
                           self.calls('guest-file-open')]], self.removed())

    def test_rename_failing_midway_is_done_again_in_full(self):
        # The runner's temporary file vanishes before the renames: the
        # helper is renamed, the runner and the hook are not.
        def lose_runner_temp(args):
            if args[1] == deliver._INSTALL_SCRIPT:
                os.unlink(self.agent.host_path(args[5]))

        self.agent.before_run = lose_runner_temp
        e = self.assertRaises(exception.GuestToolsDeliveryFailed,
                              self.install)
        self.assertEqual(HOOK, e.path)
        self.assertIn('installing %s in the guest failed (exit 1)' % HOOK,
                      str(e))
        # The hook's temporary file was removed; the helper is in place.
        self.assertEqual(['nova-substrate-guestutil'], self.agent.files())
        self.assertIsNone(deliver.installed_version(
            self.agent, HOOK, GUESTUTIL, time.monotonic() + 30))
        self.agent.before_run = None
        self.assertTrue(self.install())
        self.assertInstalled()

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

    def test_missing_runner_on_the_host_leaves_the_guest_alone(self):
        os.unlink(self.tools.runner)
        e = self.assertRaises(exception.GuestToolsError, self.install)
        self.assertIn(self.tools.runner, str(e))
        self.assertEqual([], self.agent.commands)
        self.assertEqual(1, len(self.agent.runs))

    def test_temp_name_is_beside_its_target(self):
        a = deliver.temp_name('/usr/sbin/x')
        b = deliver.temp_name('/usr/sbin/x')
        self.assertNotEqual(a, b)
        self.assertEqual('/usr/sbin', os.path.dirname(a))
