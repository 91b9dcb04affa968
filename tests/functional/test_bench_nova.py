"""bench nova: one run through Nova's cloud, and the shape of its result.

No timing is asserted: the benchmark reports times, the host decides
them.
"""

import json

import testtools

from nova_substrate.bench import nova as nova_bench
from nova_substrate import notifications

TIMES = ('substrate_active_s', 'normal_active_s', 'substrate_ready_s',
         'normal_ready_s')


class BenchNovaTest(testtools.TestCase):

    def test_one_run(self):
        said = []

        result = nova_bench.run(runs=1, progress=said.append)

        self.assertEqual(result, json.loads(json.dumps(result)))
        for name in TIMES:
            self.assertIsInstance(result[name], float, name)
            self.assertGreater(result[name], 0, name)
            self.assertEqual([result[name]], result['runs'][name])
        self.assertEqual(
            round(result['normal_ready_s'] / result['substrate_ready_s'], 2),
            result['ratio'])
        self.assertEqual('tiny', result['guest'])
        self.assertEqual(1, result['run_count'])

        spawns = {s['flavor']: s for s in result['spawns']}
        self.assertEqual(2, len(result['spawns']))
        substrate = spawns[nova_bench.SUBSTRATE]
        self.assertEqual(notifications.ACTIVATED, substrate['mode'])
        self.assertEqual(notifications.ACTIVATED, substrate['record']['mode'])
        self.assertEqual(substrate['server_id'],
                         substrate['record']['instance_uuid'])
        self.assertIn('ready_s', substrate['record']['timings'])
        normal = spawns[nova_bench.NORMAL]
        self.assertEqual(notifications.BOOTED, normal['mode'])
        # The driver records the spawns of substrate flavors only.
        self.assertIsNone(normal['record'])
        self.assertNotEqual(substrate['server_id'], normal['server_id'])
        for spawn in result['spawns']:
            self.assertEqual(1, spawn['run'])
            self.assertEqual(spawn['active_s'],
                             result['%s_active_s' % spawn['flavor']])
            self.assertEqual(spawn['ready_s'],
                             result['%s_ready_s' % spawn['flavor']])
        self.assertTrue(any('guest-ready' in line for line in said), said)

        text = nova_bench.summary(result)
        self.assertIn('%.3f s' % result['substrate_ready_s'], text)
        self.assertIn('%.3f s' % result['normal_ready_s'], text)
