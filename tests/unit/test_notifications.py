"""Spawn records: notifications, instance system metadata, the log."""

import os
import stat
import types
from unittest import mock

import fixtures
import testtools

from nova_substrate import notifications

CONTEXT = 'context'
KEY = 'ab' * 16


def fake_instance():
    return types.SimpleNamespace(
        uuid='7c9e6679-7425-40de-944b-e07fc1f90ae7', host='compute-1',
        image_ref='8a0c6f2e-1b3d-4e5f-a6b7-c8d9e0f1a2b3',
        flavor=types.SimpleNamespace(name='m1.substrate'),
        system_metadata={'image_os_type': 'linux'})


class ActivationLogTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.path = os.path.join(self.dir, 'sub', 'activations.jsonl')
        self.log = notifications.ActivationLog(self.path)

    def test_missing_file(self):
        self.assertEqual([], self.log.read())
        self.assertEqual([], self.log.read(5))

    def test_append_and_read(self):
        for i in range(5):
            self.log.append({'n': i, 'mode': 'activated'})
        self.assertEqual([{'n': i, 'mode': 'activated'} for i in range(5)],
                         self.log.read())
        self.assertEqual([3, 4], [r['n'] for r in self.log.read(2)])
        self.assertEqual(5, len(self.log.read(50)))

    def test_one_line_per_record(self):
        self.log.append({'a': 1})
        self.log.append({'b': 2})
        with open(self.path) as f:
            self.assertEqual(['{"a": 1}\n', '{"b": 2}\n'], f.readlines())

    def test_private_file(self):
        self.log.append({'a': 1})
        self.assertEqual(0o600, stat.S_IMODE(os.stat(self.path).st_mode))

    def test_truncated_last_line_skipped(self):
        self.log.append({'n': 1})
        self.log.append({'n': 2})
        with open(self.path, 'a') as f:
            f.write('{"n": 3, "mo')
        self.assertEqual([{'n': 1}, {'n': 2}], self.log.read())


class ReportSpawnTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.notify = self.useFixture(fixtures.MockPatch(
            'nova_substrate.notifications.notify')).mock
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'activations.jsonl')
        self.log = notifications.ActivationLog(path)
        self.instance = fake_instance()

    def events(self):
        return [c[0][2] for c in self.notify.call_args_list]

    def payloads(self):
        return [c[0][3] for c in self.notify.call_args_list]

    def test_activated(self):
        timings = {'restore_s': 0.4, 'plug_s': 0.1}
        record = notifications.report_spawn(
            CONTEXT, self.log, self.instance, KEY, 1.23456, timings=timings)
        self.notify.assert_called_once_with(
            CONTEXT, 'compute-1', notifications.ACTIVATE_END, record)
        self.assertEqual(notifications.ACTIVATED, record['mode'])
        self.assertEqual(timings, record['timings'])
        self.assertEqual(1.235, record['seconds'])
        self.assertEqual(
            (self.instance.uuid, 'compute-1', KEY, self.instance.image_ref,
             'm1.substrate'),
            (record['instance_uuid'], record['host'], record['key'],
             record['image_id'], record['flavor']))
        self.assertNotIn('reason', record)
        self.assertEqual({'image_os_type': 'linux',
                          'substrate_spawn': 'activated',
                          'substrate_spawn_s': '1.235'},
                         self.instance.system_metadata)
        self.assertEqual([record], self.log.read())

    def test_activation_failed(self):
        record = notifications.report_spawn(
            CONTEXT, self.log, self.instance, KEY, 20.5,
            error=RuntimeError('restore failed'))
        self.assertEqual([notifications.ACTIVATE_ERROR,
                          notifications.BOOT_END], self.events())
        error, boot = self.payloads()
        self.assertEqual('restore failed', error['error'])
        self.assertNotIn('mode', error)
        self.assertEqual(KEY, error['key'])
        self.assertIs(record, boot)
        self.assertEqual(notifications.BOOTED, record['mode'])
        self.assertTrue(record['reason'].startswith('activation failed'))
        self.assertIn('restore failed', record['reason'])
        self.assertEqual('booted',
                         self.instance.system_metadata['substrate_spawn'])
        self.assertEqual('20.500',
                         self.instance.system_metadata['substrate_spawn_s'])
        self.assertEqual([record], self.log.read())

    def test_booted(self):
        record = notifications.report_spawn(
            CONTEXT, self.log, self.instance, KEY, 31.0,
            reason='no substrate on this host')
        self.notify.assert_called_once_with(
            CONTEXT, 'compute-1', notifications.BOOT_END, record)
        self.assertEqual(notifications.BOOTED, record['mode'])
        self.assertEqual('no substrate on this host', record['reason'])
        self.assertNotIn('timings', record)
        self.assertEqual('booted',
                         self.instance.system_metadata['substrate_spawn'])

    def test_unwritable_log(self):
        # Its directory is a file: the spawn is still reported.
        blocker = os.path.join(self.useFixture(fixtures.TempDir()).path,
                               'file')
        open(blocker, 'w').close()
        log = notifications.ActivationLog(os.path.join(blocker, 'log'))
        record = notifications.report_spawn(
            CONTEXT, log, self.instance, KEY, 1.0, timings={})
        self.assertEqual(notifications.ACTIVATED, record['mode'])
        self.assertEqual(1, self.notify.call_count)
        self.assertEqual('activated',
                         self.instance.system_metadata['substrate_spawn'])


class NotifyTest(testtools.TestCase):

    def test_notifier_failure_is_not_raised(self):
        notifier = mock.Mock()
        notifier.info.side_effect = RuntimeError('rabbit down')
        self.useFixture(fixtures.MockPatch(
            'nova_substrate.notifications._notifier', return_value=notifier))
        notifications.notify(CONTEXT, 'compute-1',
                             notifications.BOOT_END, {'a': 1})
        notifier.info.assert_called_once_with(
            CONTEXT, notifications.BOOT_END, {'a': 1})

    def test_sends_info(self):
        notifier = self.useFixture(fixtures.MockPatch(
            'nova_substrate.notifications._notifier')).mock
        notifications.notify(CONTEXT, 'compute-1',
                             notifications.ACTIVATE_END, {'a': 1})
        notifier.assert_called_once_with('compute-1')
        notifier.return_value.info.assert_called_once_with(
            CONTEXT, notifications.ACTIVATE_END, {'a': 1})
