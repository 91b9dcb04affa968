"""nova-substrate activations: the activation log as a table or JSON."""

import argparse
import contextlib
import io
import json
import os

import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools

from nova_substrate.cmd import activations
from nova_substrate import conf as substrate_conf
from nova_substrate import notifications

UUID_1 = '7c9e6679-7425-40de-944b-e07fc1f90ae7'
UUID_2 = '16fd2706-8baf-433b-82eb-8c7fada847da'
KEY = '0123456789abcdef' * 2
# 2023-11-14T22:13:20Z
T0 = 1700000000


def record(n, instance=UUID_1, mode='activated', **extra):
    r = {'time': T0 + n, 'instance_uuid': instance, 'host': 'compute-1',
         'key': KEY, 'image_id': 'image-1', 'flavor': 'm1.substrate',
         'seconds': 1.5 + n, 'mode': mode}
    if mode == 'activated':
        r['timings'] = {'restore_s': 0.5}
    r.update(extra)
    return r


class ActivationsCommandTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                 'activations.jsonl')
        self.conf = cfg.ConfigOpts()
        substrate_conf.register_opts(self.conf)
        fixture = self.useFixture(config_fixture.Config(self.conf))
        self.conf([], default_config_files=[])
        fixture.config(activation_log=self.path, group='substrate')
        self.log = notifications.ActivationLog(self.path)
        parser = argparse.ArgumentParser(prog='nova-substrate')
        self.subparsers = parser.add_subparsers(dest='group', required=True)
        self.parser = parser
        activations.add_parser(self.subparsers)

    def run_command(self, *argv):
        args = self.parser.parse_args(['activations'] + list(argv))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = activations.run(args, self.conf)
        self.assertEqual(0, rc)
        return out.getvalue()

    def table(self, *argv):
        lines = self.run_command(*argv).splitlines()
        header = lines[0].split()
        self.assertEqual(list(activations.COLUMNS), header)
        self.assertEqual(set('- '), set(lines[1]))
        return lines[2:]

    def test_options(self):
        args = self.parser.parse_args(['activations'])
        self.assertEqual((False, 20, None),
                         (args.json, args.limit, args.instance))
        args = self.parser.parse_args(['activations', '--json', '--limit',
                                       '5', '--instance', UUID_1])
        self.assertEqual((True, 5, UUID_1),
                         (args.json, args.limit, args.instance))

    def test_bad_limit(self):
        err = io.StringIO()
        for value in ('0', '-1', 'many'):
            with contextlib.redirect_stderr(err):
                self.assertRaises(SystemExit, self.parser.parse_args,
                                  ['activations', '--limit', value])
        self.assertIn('--limit', err.getvalue())

    def test_help(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertRaises(SystemExit, self.parser.parse_args, ['-h'])
        # argparse wraps the help to the terminal's width.
        text = ' '.join(out.getvalue().split())
        self.assertIn('activations ' + activations.HELP, text)

    def test_no_log(self):
        self.assertIn('No spawns recorded in %s' % self.path,
                      self.run_command())
        self.assertEqual([], json.loads(self.run_command('--json')))

    def test_no_match(self):
        self.log.append(record(0))
        out = self.run_command('--instance', UUID_2)
        self.assertIn('No spawns recorded', out)
        self.assertIn(UUID_2, out)

    def test_json(self):
        records = [record(0), record(1, mode='booted', reason='no substrate')]
        for r in records:
            self.log.append(r)
        self.assertEqual(records, json.loads(self.run_command('--json')))

    def test_table(self):
        self.log.append(record(0))
        self.log.append(record(1, instance=UUID_2, mode='booted',
                               reason='activation failed: restore failed'))
        first, second = self.table()
        self.assertEqual(['2023-11-14T22:13:20Z', UUID_1, 'activated',
                          '1.500', 'm1.substrate', KEY[:12]],
                         first.split())
        self.assertEqual(['2023-11-14T22:13:21Z', UUID_2, 'booted', '2.500',
                          'm1.substrate', KEY[:12], 'activation', 'failed:',
                          'restore', 'failed'], second.split())
        self.assertNotIn(KEY, first)

    def test_columns_line_up(self):
        self.log.append(record(0, flavor='f'))
        self.log.append(record(1, flavor='a.much.longer.flavor'))
        lines = self.run_command().splitlines()
        column = lines[0].index('key')
        for line in lines[2:]:
            self.assertEqual(KEY[:12], line[column:column + 12])

    def test_limit_keeps_the_last(self):
        for n in range(30):
            self.log.append(record(n))
        self.assertEqual(20, len(self.table()))
        shown = json.loads(self.run_command('--json', '--limit', '3'))
        self.assertEqual([T0 + 27, T0 + 28, T0 + 29],
                         [r['time'] for r in shown])

    def test_instance_filter_before_limit(self):
        for n in range(10):
            self.log.append(record(n, instance=UUID_1 if n % 3 == 0
                                   else UUID_2))
        shown = json.loads(self.run_command('--json', '--instance', UUID_1,
                                            '--limit', '2'))
        self.assertEqual([T0 + 6, T0 + 9], [r['time'] for r in shown])
        self.assertEqual({UUID_1}, {r['instance_uuid'] for r in shown})
        self.assertEqual(4, len(self.table('--instance', UUID_1)))

    def test_incomplete_records(self):
        self.log.append({'instance_uuid': UUID_1, 'mode': 'booted',
                         'time': 'later', 'seconds': None})
        [line] = self.table()
        self.assertEqual([UUID_1, 'booted'], line.split())

    def test_truncated_record_skipped(self):
        self.log.append(record(0))
        with open(self.path, 'a') as f:
            f.write('{"time": ')
        self.assertEqual(1, len(self.table()))
