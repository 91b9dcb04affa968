"""bench cache: the timed record, the replay script, the result, the plot.

The measurements need libvirt and QEMU (tests/integration); what they are
turned into is tested here.
"""

import io
import os

import fixtures
import testtools

from nova_substrate.bench import cache as cache_bench
from nova_substrate.cmd import main as cmd_main

KiB = 1024
MiB = 2 ** 20
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class TimedRecordTest(testtools.TestCase):

    # Metadata (1 MiB) is there before the boot reads anything; then the
    # cache grows by 2 MiB between 1.0 s and 1.5 s, stays put while the
    # guest computes, and grows by 2 MiB more between 3.0 s and 3.5 s.
    SAMPLES = [(0.0, 1 * MiB), (0.5, 1 * MiB), (1.0, 1 * MiB),
               (1.5, 3 * MiB), (2.0, 3 * MiB), (2.5, 3 * MiB),
               (3.0, 3 * MiB), (3.5, 5 * MiB), (4.0, 5 * MiB)]
    EXTENTS = [(100 * MiB, 2 * MiB), (7 * MiB, 1 * MiB), (0, 1 * MiB)]

    def test_growth_is_scaled_to_the_working_set(self):
        curve = cache_bench.growth_curve(self.SAMPLES, 8 * MiB)
        self.assertEqual(0, curve[0])
        self.assertEqual(8 * MiB, curve[-1])
        self.assertEqual(4 * MiB, curve[3])

    def test_growth_never_goes_down(self):
        curve = cache_bench.growth_curve(
            [(0, 0), (1, 4 * MiB), (2, 3 * MiB), (3, 8 * MiB)], 8 * MiB)
        self.assertEqual([0, 4 * MiB, 4 * MiB, 8 * MiB], curve)

    def test_reads_are_split_and_kept_in_order(self):
        reads = cache_bench.timed_record(self.EXTENTS, self.SAMPLES,
                                         read_bytes=512 * KiB)
        self.assertEqual(8, len(reads))
        self.assertEqual(4 * MiB, sum(r.length for r in reads))
        self.assertEqual([100 * MiB + i * 512 * KiB for i in range(4)] +
                         [7 * MiB, 7 * MiB + 512 * KiB, 0, 512 * KiB],
                         [r.offset for r in reads])
        times = [r.at_s for r in reads]
        self.assertEqual(sorted(times), times)

    def test_reads_get_the_time_the_boot_reached_them(self):
        reads = cache_bench.timed_record(self.EXTENTS, self.SAMPLES,
                                         read_bytes=1 * MiB)
        # The first read starts when growth starts; the rest follow the
        # growth curve, and the idle time in between is kept.
        self.assertEqual([1.0, 1.25, 3.0, 3.25],
                         [round(r.at_s, 6) for r in reads])

    def test_a_last_extent_shorter_than_a_read(self):
        reads = cache_bench.timed_record([(0, 600 * KiB)],
                                         [(0, 0), (1, 600 * KiB)],
                                         read_bytes=256 * KiB)
        self.assertEqual([256 * KiB, 256 * KiB, 88 * KiB],
                         [r.length for r in reads])

    def test_a_cache_that_did_not_grow(self):
        reads = cache_bench.timed_record([(0, MiB)], [(0.0, MiB), (1.0, MiB)])
        self.assertTrue(all(r.at_s == 0.0 for r in reads))

    def test_no_samples(self):
        self.assertRaises(ValueError, cache_bench.timed_record, [(0, MiB)],
                          [])


class ScriptTest(testtools.TestCase):

    def test_reads_with_sleeps_between_then_a_flush(self):
        reads = [cache_bench.TimedRead(0, 65536, 0.0),
                 cache_bench.TimedRead(65536, 65536, 0.0),
                 cache_bench.TimedRead(1048576, 4096, 0.25),
                 cache_bench.TimedRead(0, 512, 1.5)]
        self.assertEqual('aio_read -q 0 65536\n'
                         'aio_read -q 65536 65536\n'
                         'sleep 250\n'
                         'aio_read -q 1048576 4096\n'
                         'sleep 1250\n'
                         'aio_read -q 0 512\n'
                         'aio_flush\n',
                         cache_bench.qemu_io_script(reads))

    def test_sleeps_count_from_the_start(self):
        # A third of a millisecond apart: rounding each gap would lose
        # the time; counting from the start keeps it.
        reads = [cache_bench.TimedRead(i, 1, i / 3000.0)
                 for i in range(3001)]
        script = cache_bench.qemu_io_script(reads)
        slept = sum(int(line.split()[1]) for line in script.splitlines()
                    if line.startswith('sleep'))
        self.assertEqual(1000, slept)

    def test_reads_before_the_first_sample_wait_for_nothing(self):
        script = cache_bench.qemu_io_script(
            [cache_bench.TimedRead(0, 512, 0.0)])
        self.assertNotIn('sleep', script)


def fake_result(boot=True, replay_cache=(30.0, 31.0, 33.0),
                cache_bytes=50 * MiB):
    results = []
    for i, n in enumerate((1, 2, 4)):
        boot_s = boot_bytes = None
        if boot:
            boot_s = {'no_cache': 35.0 * n, 'cache': 28.0 + i}
            boot_bytes = {'no_cache': 41 * MiB, 'cache': 1000}
        results.append(cache_bench.count_result(
            n, boot_s, boot_bytes,
            {'no_cache': 30.0 * n, 'cache': replay_cache[i]},
            {'no_cache': 49 * MiB, 'cache': 0}))
    return cache_bench.summarize({
        'guest': 'debian', 'server': 'qemu-storage-daemon (NBD over TCP)',
        'limit': 'qemu throttle-group', 'bandwidth_mbps': 100,
        'image_bytes': 400 * MiB, 'cache_bytes': cache_bytes,
        'working_set_bytes': 49 * MiB, 'recording_boot_s': 31.0,
        'counts': [1, 2, 4], 'results': results})


class ResultTest(testtools.TestCase):

    def test_rows(self):
        result = fake_result()
        row = result['results'][1]
        self.assertEqual(2, row['n'])
        self.assertEqual(70.0, row['no_cache_s'])
        self.assertEqual(29.0, row['cache_s'])
        self.assertEqual(60.0, row['replay_no_cache_s'])
        self.assertEqual(31.0, row['replay_cache_s'])
        # Boots measured: the bytes per boot are the boots'.
        self.assertEqual({'no_cache': 41 * MiB, 'cache': 1000},
                         row['remote_bytes_per_boot'])
        self.assertEqual({'no_cache': 49 * MiB, 'cache': 0},
                         row['replay_remote_bytes_per_boot'])

    def test_ratios_are_largest_n_over_smallest(self):
        ratios = fake_result()['ratios']
        self.assertEqual({'boot_no_cache': 4.0, 'boot_cache': 1.071,
                          'replay_no_cache': 4.0, 'replay_cache': 1.1},
                         ratios)

    def test_targets_met(self):
        result = fake_result()
        self.assertEqual(0.125, result['cache_fraction'])
        self.assertEqual({'replay_cache_ratio': True,
                          'cache_fraction': True}, result['targets'])
        self.assertEqual(cache_bench.TARGETS, result['target_limits'])

    def test_targets_missed(self):
        result = fake_result(replay_cache=(30.0, 36.0, 40.0),
                             cache_bytes=80 * MiB)
        self.assertEqual(1.333, result['ratios']['replay_cache'])
        self.assertEqual({'replay_cache_ratio': False,
                          'cache_fraction': False}, result['targets'])

    def test_without_boots(self):
        result = fake_result(boot=False)
        row = result['results'][0]
        self.assertIsNone(row['no_cache_s'])
        self.assertIsNone(row['cache_s'])
        # No boots: the bytes per boot are the replays'.
        self.assertEqual({'no_cache': 49 * MiB, 'cache': 0},
                         row['remote_bytes_per_boot'])
        self.assertIsNone(result['ratios']['boot_cache'])
        self.assertIsNone(result['ratios']['boot_no_cache'])
        self.assertEqual(1.1, result['ratios']['replay_cache'])

    def test_summary_names_every_series(self):
        text = cache_bench.summary(fake_result(boot=False))
        self.assertIn('replay cache', text)
        self.assertIn('boot no cache', text)
        self.assertIn('replay_cache 1.10', text)
        self.assertIn('boot_cache -', text)
        self.assertIn('cache_fraction <= 0.15 met', text)


class PlotTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path

    def assertPNG(self, path):
        with open(path, 'rb') as f:
            self.assertEqual(PNG_SIGNATURE, f.read(8))
        self.assertGreater(os.path.getsize(path), 1000)

    def test_plot_with_boots(self):
        path = os.path.join(self.dir, 'startup.png')
        cache_bench.write_plot(fake_result(), path)
        self.assertPNG(path)

    def test_plot_of_replays_alone(self):
        path = os.path.join(self.dir, 'replay.png')
        cache_bench.write_plot(fake_result(boot=False), path)
        self.assertPNG(path)

    def test_log2_ticks(self):
        self.assertEqual([1, 2, 4, 8, 16],
                         cache_bench.log2_ticks([1, 2, 4, 8, 16]))
        self.assertEqual([1, 2, 3], cache_bench.log2_ticks([1, 3]))
        self.assertEqual([1, 2, 4, 6], cache_bench.log2_ticks([2, 6]))


class CommandLineTest(testtools.TestCase):

    def parse(self, *args):
        return cmd_main.build_parser().parse_args(['bench', 'cache'] +
                                                  list(args))

    def test_defaults(self):
        args = self.parse()
        self.assertEqual([1, 2, 4, 8, 16], args.counts)
        self.assertEqual(cache_bench.DEFAULT_BANDWIDTH_MBPS,
                         args.bandwidth_mbps)
        self.assertEqual(256, args.memory_mb)
        self.assertFalse(args.no_boot)
        self.assertIsNone(args.plot)
        self.assertFalse(args.json)

    def test_options(self):
        args = self.parse('--json', '--plot', 'out.png', '--counts', '1,2',
                          '--bandwidth-mbps', '1000', '--memory-mb', '384',
                          '--no-boot')
        self.assertEqual([1, 2], args.counts)
        self.assertEqual(1000, args.bandwidth_mbps)
        self.assertEqual(384, args.memory_mb)
        self.assertTrue(args.no_boot)
        self.assertEqual('out.png', args.plot)

    def test_bad_counts(self):
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', io.StringIO()))
        for counts in ('0,1', 'one', ''):
            self.assertRaises(SystemExit, self.parse, '--counts', counts)
